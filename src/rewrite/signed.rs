//! Signed content. A signature would break under the rewrite and would name the signer, so
//! signed mail is refused ([`RewriteError::Signed`]) unless the caller asked to strip
//! signatures. Stripping keeps the signed content: the first part of a `multipart/signed`
//! (done in [`super::mime`]) or the text between the armour lines of an inline PGP
//! signature. Opaque S/MIME signed-data (`application/pkcs7-mime`) wraps the content inside
//! the signature itself, so it cannot be stripped without an ASN.1 parser and is always
//! refused.

use std::borrow::Cow;

use mail_parser::ContentType;

use super::RewriteError;

const PGP_BEGIN: &str = "-----BEGIN PGP SIGNED MESSAGE-----";
const PGP_SIG: &str = "-----BEGIN PGP SIGNATURE-----";
const PGP_END: &str = "-----END PGP SIGNATURE-----";

/// Refuses opaque S/MIME signed data (anything pkcs7-mime that is not enveloped).
pub fn check_pkcs7(ct: Option<&ContentType<'_>>) -> Result<(), RewriteError> {
    let Some(ct) = ct else { return Ok(()) };
    let sub = ct.subtype().unwrap_or("").to_ascii_lowercase();
    if !ct.ctype().eq_ignore_ascii_case("application")
        || !(sub == "pkcs7-mime" || sub == "x-pkcs7-mime")
    {
        return Ok(());
    }
    let kind = ct
        .attribute("smime-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    if kind.contains("enveloped") {
        Ok(())
    } else {
        Err(RewriteError::Signed)
    }
}

/// Handles an inline PGP signature in a text part.
pub fn inline_pgp(text: Cow<'_, str>, strip: bool) -> Result<Cow<'_, str>, RewriteError> {
    let Some(begin) = text.find(PGP_BEGIN) else {
        return Ok(text);
    };
    if !strip {
        return Err(RewriteError::Signed);
    }
    let after = &text[begin + PGP_BEGIN.len()..];
    // Armour headers ("Hash: SHA256") end at the first empty line.
    let body_start = after
        .find("\n\n")
        .or_else(|| after.find("\r\n\r\n").map(|p| p + 2))
        .map_or(0, |p| p + 2);
    let body = &after[body_start..];
    let (signed, rest) = match body.find(PGP_SIG) {
        Some(p) => (&body[..p], &body[p..]),
        None => (body, ""),
    };
    let tail = rest
        .find(PGP_END)
        .map_or("", |p| &rest[p + PGP_END.len()..]);
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..begin]);
    for line in signed.split_inclusive('\n') {
        out.push_str(line.strip_prefix("- ").unwrap_or(line));
    }
    out.push_str(tail.trim_start_matches(['\r', '\n']));
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_pgp_is_refused_or_stripped() {
        let t = "Hi\n-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nsigned text\n- -- dashes\n-----BEGIN PGP SIGNATURE-----\nabc\n-----END PGP SIGNATURE-----\nbye\n";
        assert_eq!(
            inline_pgp(t.into(), false).unwrap_err(),
            RewriteError::Signed
        );
        assert_eq!(
            inline_pgp(t.into(), true).unwrap(),
            "Hi\nsigned text\n-- dashes\nbye\n"
        );
        assert_eq!(inline_pgp("plain".into(), false).unwrap(), "plain");
    }
}
