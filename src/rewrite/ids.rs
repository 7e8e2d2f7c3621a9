//! Message-IDs: the ones the service issues (random part plus a keyed marker, so mail
//! that comes back can be recognised) and the opaque, stable stand-ins for everyone
//! else's IDs in `In-Reply-To`/`References`.

use super::Directory;
use crate::address::Domain;
use crate::keys::{Keys, Purpose};

/// Bytes of the keyed marker carried in an issued Message-ID.
const MARKER_BYTES: usize = 8;

/// The Message-ID (without angle brackets) issued for `nonce`: `HEX(nonce).HEX(marker)@DOMAIN`.
pub fn issue(nonce: &[u8; 16], keys: &Keys, domain: &Domain) -> String {
    let random = hex::encode(nonce);
    let tag = keys.mac(Purpose::Marker, &marker_data(&random, domain));
    format!(
        "{random}.{}@{}",
        hex::encode(&tag[..MARKER_BYTES]),
        domain.as_str()
    )
}

fn marker_data(random: &str, domain: &Domain) -> Vec<u8> {
    let mut data = Vec::with_capacity(random.len() + domain.as_str().len() + 1);
    data.extend_from_slice(random.as_bytes());
    data.push(b'@');
    data.extend_from_slice(domain.as_str().as_bytes());
    data
}

/// True when `id` (with or without angle brackets) was issued by this service.
pub fn is_own(id: &str, keys: &Keys, domain: &Domain) -> bool {
    let id = id.trim().trim_start_matches('<').trim_end_matches('>');
    let Some((local, host)) = id.rsplit_once('@') else {
        return false;
    };
    if !host.eq_ignore_ascii_case(domain.as_str()) {
        return false;
    }
    let Some((random, tag)) = local.split_once('.') else {
        return false;
    };
    if random.len() != 32 || !random.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    match hex::decode(tag) {
        Ok(tag) if tag.len() == MARKER_BYTES => keys.verify_mac(
            Purpose::Marker,
            &marker_data(&random.to_ascii_lowercase(), domain),
            &tag,
        ),
        _ => false,
    }
}

/// The opaque stand-in for a foreign Message-ID: `HEX(hmac)[..32]@DOMAIN`.
pub fn opaque(id: &str, keys: &Keys, domain: &Domain) -> String {
    let tag = keys.mac(Purpose::ThreadId, id.as_bytes());
    format!("{}@{}", &hex::encode(&tag[..16]), domain.as_str())
}

/// Maps one referenced ID: IDs this service issued go back to the original, others become
/// opaque.
pub fn map_reference(id: &str, dir: &dyn Directory, keys: &Keys, domain: &Domain) -> String {
    match dir.original_message_id(id) {
        Some(original) => original.to_string(),
        None => opaque(id, keys, domain),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_ids_are_recognised_and_forgeries_are_not() {
        let keys = Keys::from_master([1; 32]);
        let other = Keys::from_master([2; 32]);
        let d = Domain::parse("remailer.test").unwrap();
        let id = issue(&[9; 16], &keys, &d);
        assert!(id.ends_with("@remailer.test"));
        assert!(is_own(&id, &keys, &d));
        assert!(is_own(&format!("<{}>", id.to_uppercase()), &keys, &d));
        assert!(!is_own(&id, &other, &d));
        assert!(!is_own(&id.replace("remailer.test", "x.test"), &keys, &d));
        let mut forged = id.clone();
        forged.replace_range(0..1, if id.starts_with('0') { "1" } else { "0" });
        assert!(!is_own(&forged, &keys, &d));
        assert!(!is_own("abc@remailer.test", &keys, &d));
    }

    #[test]
    fn opaque_ids_are_stable_and_hide_the_host() {
        let keys = Keys::from_master([1; 32]);
        let d = Domain::parse("remailer.test").unwrap();
        let a = opaque("CAF=x@mail.gmail.com", &keys, &d);
        assert_eq!(a, opaque("CAF=x@mail.gmail.com", &keys, &d));
        assert_ne!(a, opaque("CAF=y@mail.gmail.com", &keys, &d));
        assert!(!a.contains("gmail"));
        assert_eq!(a.len(), 32 + 1 + "remailer.test".len());
    }
}
