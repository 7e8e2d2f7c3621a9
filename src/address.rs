//! Address types: the service's [`Domain`], a member's [`AliasName`] / [`Alias`], and a
//! member's [`RealAddress`], and a [`Member`] (an alias bound to its real address). Each is validated once, when it is made, so code that holds
//! one never has to ask again whether it is well-formed.

use std::fmt;

use thiserror::Error;

/// Why a string is not a valid domain, alias or address.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AddressError {
    #[error("'{0}' is not a valid domain name")]
    BadDomain(String),
    #[error("alias name must be 1 to 64 characters long")]
    AliasLength,
    #[error("alias name may contain only a-z, 0-9, '.', '-' and '_', and must start and end with a letter or digit")]
    AliasCharacters,
    #[error("alias name '{0}' is reserved")]
    AliasReserved(String),
    #[error("alias must be at {expected}, not at {got}")]
    AliasWrongDomain { expected: String, got: String },
    #[error("not a valid email address (expected local-part@domain)")]
    BadAddress,
    #[error("a real address may not be at the service's own domain {0}")]
    RealAtServiceDomain(String),
}

/// A DNS domain, stored in lower case without a trailing dot, internationalised labels
/// (U-labels, `bücher`) as their A-labels (`xn--bcher-kva`, RFC 5890), so that one domain has
/// one spelling whichever way a client wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Domain(String);

impl Domain {
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let trimmed = s.trim().trim_end_matches('.');
        let d = if trimmed.is_ascii() {
            trimmed.to_ascii_lowercase()
        } else {
            idna::domain_to_ascii(trimmed).map_err(|_| AddressError::BadDomain(s.to_string()))?
        };
        let ok = !d.is_empty()
            && d.len() <= 253
            && d.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if ok {
            Ok(Domain(d))
        } else {
            Err(AddressError::BadDomain(s.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `other` is this domain or one of its subdomains.
    pub fn covers(&self, other: &str) -> bool {
        let other = other.trim_end_matches('.').to_ascii_lowercase();
        other == self.0 || other.ends_with(&format!(".{}", self.0))
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Local parts that no member may take: role accounts (RFC 2142), the service's own
/// senders, and the prefixes its bounce addresses use.
const RESERVED: &[&str] = &[
    "postmaster",
    "abuse",
    "hostmaster",
    "webmaster",
    "mailer-daemon",
    "root",
    "admin",
    "administrator",
    "security",
    "noc",
    "support",
    "info",
    "noreply",
    "no-reply",
    "nobody",
    "anonymous",
    "remailer",
    "bounce",
    "bounces",
    "b",
    "dmarc",
    "tls-rpt",
    "mta-sts",
    "www",
];
const RESERVED_PREFIXES: &[&str] = &["bounce-", "bounce.", "bounces-", "owner-", "b-", "b."];

/// The local part of an alias: lower case, 1–64 of `a-z 0-9 . - _`, starting and ending
/// with a letter or digit, no `..`, not reserved.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AliasName(String);

impl AliasName {
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let name = s.trim().to_ascii_lowercase();
        if name.is_empty() || name.len() > 64 {
            return Err(AddressError::AliasLength);
        }
        let bytes = name.as_bytes();
        let edge_ok = |b: u8| b.is_ascii_alphanumeric();
        let chars_ok = bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
        if !chars_ok
            || !edge_ok(bytes[0])
            || !edge_ok(bytes[bytes.len() - 1])
            || name.contains("..")
        {
            return Err(AddressError::AliasCharacters);
        }
        if RESERVED.contains(&name.as_str())
            || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
        {
            return Err(AddressError::AliasReserved(name));
        }
        Ok(AliasName(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AliasName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A member's public address: `name@DOMAIN`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Alias {
    pub name: AliasName,
    pub domain: Domain,
}

impl Alias {
    pub fn new(name: AliasName, domain: &Domain) -> Self {
        Alias {
            name,
            domain: domain.clone(),
        }
    }

    /// Accepts `name` or `name@DOMAIN` (the domain must be the service's).
    pub fn parse(s: &str, domain: &Domain) -> Result<Self, AddressError> {
        let s = s.trim();
        let local = match s.rsplit_once('@') {
            Some((local, dom)) => {
                if !domain.covers(dom) || Domain::parse(dom)? != *domain {
                    return Err(AddressError::AliasWrongDomain {
                        expected: domain.to_string(),
                        got: dom.to_string(),
                    });
                }
                local
            }
            None => s,
        };
        Ok(Alias::new(AliasName::parse(local)?, domain))
    }

    pub fn address(&self) -> String {
        format!("{}@{}", self.name, self.domain)
    }
}

impl fmt::Display for Alias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.domain)
    }
}

/// A member's real mailbox. Never logged: its `Debug` and `Display` forms are redacted, and
/// the address itself is reached only through [`RealAddress::expose`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RealAddress {
    local: String,
    domain: String,
}

impl RealAddress {
    /// Parses `local@domain` (angle brackets allowed). The domain may not be the service's.
    pub fn parse(s: &str, service: &Domain) -> Result<Self, AddressError> {
        let addr = Self::parse_any(s)?;
        if service.covers(&addr.domain) {
            return Err(AddressError::RealAtServiceDomain(service.to_string()));
        }
        Ok(addr)
    }

    /// Parses an address without the service-domain rule (for envelope senders and
    /// addresses found in messages).
    pub fn parse_any(s: &str) -> Result<Self, AddressError> {
        let s = s.trim().trim_start_matches('<').trim_end_matches('>');
        let (local, domain) = s.rsplit_once('@').ok_or(AddressError::BadAddress)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local
                .bytes()
                .any(|b| b.is_ascii_control() || matches!(b, b' ' | b'<' | b'>' | b'@' | b','));
        if !local_ok || domain.len() > 255 {
            return Err(AddressError::BadAddress);
        }
        let domain = Domain::parse(domain).map_err(|_| AddressError::BadAddress)?;
        Ok(RealAddress {
            local: local.to_string(),
            domain: domain.0,
        })
    }

    /// The address as mail needs it. Call only where it goes on the wire or into the
    /// encrypted store, never into a log.
    pub fn expose(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }

    /// The normalised form the keyed lookup hash is computed over (lower case).
    pub fn normalized(&self) -> String {
        format!("{}@{}", self.local.to_lowercase(), self.domain)
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }
}

impl fmt::Debug for RealAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RealAddress(<redacted>)")
    }
}

impl fmt::Display for RealAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted>@{}", self.domain)
    }
}

/// A member: an alias bound to a real address (as the rewrite and the members directory
/// see them).
#[derive(Debug, Clone)]
pub struct Member {
    pub alias: Alias,
    pub real: RealAddress,
    /// The display name the member chose for their alias (none by default).
    pub display_name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom() -> Domain {
        Domain::parse("remailer.test").unwrap()
    }

    #[test]
    fn internationalised_domains_are_stored_as_a_labels() {
        assert_eq!(
            Domain::parse("Bücher.Example").unwrap().as_str(),
            "xn--bcher-kva.example"
        );
        let a = RealAddress::parse_any("jöe@bücher.example").unwrap();
        assert_eq!(a.expose(), "jöe@xn--bcher-kva.example");
        assert_eq!(
            a,
            RealAddress::parse_any("jöe@xn--bcher-kva.example").unwrap()
        );
        assert!(Domain::parse("bü cher.example").is_err());
    }

    #[test]
    fn alias_names_are_validated() {
        assert_eq!(AliasName::parse("Ann").unwrap().as_str(), "ann");
        assert!(AliasName::parse("a.b-c_d9").is_ok());
        assert_eq!(AliasName::parse(""), Err(AddressError::AliasLength));
        assert_eq!(
            AliasName::parse(&"a".repeat(65)),
            Err(AddressError::AliasLength)
        );
        assert_eq!(AliasName::parse("a b"), Err(AddressError::AliasCharacters));
        assert_eq!(AliasName::parse(".ann"), Err(AddressError::AliasCharacters));
        assert_eq!(AliasName::parse("ann."), Err(AddressError::AliasCharacters));
        assert_eq!(AliasName::parse("a..b"), Err(AddressError::AliasCharacters));
        assert_eq!(AliasName::parse("a+b"), Err(AddressError::AliasCharacters));
        assert!(matches!(
            AliasName::parse("Postmaster"),
            Err(AddressError::AliasReserved(_))
        ));
        assert!(matches!(
            AliasName::parse("bounce-x"),
            Err(AddressError::AliasReserved(_))
        ));
        assert!(matches!(
            AliasName::parse("mailer-daemon"),
            Err(AddressError::AliasReserved(_))
        ));
    }

    #[test]
    fn alias_parse_accepts_local_or_full_address() {
        assert_eq!(
            Alias::parse("ann", &dom()).unwrap().address(),
            "ann@remailer.test"
        );
        assert_eq!(
            Alias::parse("Ann@Remailer.Test", &dom()).unwrap().address(),
            "ann@remailer.test"
        );
        assert!(matches!(
            Alias::parse("ann@other.test", &dom()),
            Err(AddressError::AliasWrongDomain { .. })
        ));
    }

    #[test]
    fn real_addresses_are_validated_and_redacted() {
        let a = RealAddress::parse("Joe@Real.Example", &dom()).unwrap();
        assert_eq!(a.expose(), "Joe@real.example");
        assert_eq!(a.normalized(), "joe@real.example");
        assert!(!format!("{a:?} {a}").contains("Joe"));
        assert_eq!(
            RealAddress::parse("joe", &dom()),
            Err(AddressError::BadAddress)
        );
        assert_eq!(
            RealAddress::parse("@x.test", &dom()),
            Err(AddressError::BadAddress)
        );
        assert_eq!(
            RealAddress::parse("a b@x.test", &dom()),
            Err(AddressError::BadAddress)
        );
        assert!(matches!(
            RealAddress::parse("x@remailer.test", &dom()),
            Err(AddressError::RealAtServiceDomain(_))
        ));
        assert!(matches!(
            RealAddress::parse("x@mx.remailer.test", &dom()),
            Err(AddressError::RealAtServiceDomain(_))
        ));
    }
}
