//! The opt-out link: `{public_url}/opt-out/{token}`, where the token is the address's keyed
//! opt-out hash followed by a MAC over that hash. Only mail sent to the address carries it,
//! so holding it proves receipt; it needs no stored state, never expires (a List-Unsubscribe
//! link must keep working) and reveals nothing about the address without the key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::address::RealAddress;
use crate::keys::{Keys, Purpose};

const HASH_BYTES: usize = 32;
const MAC_BYTES: usize = 16;

/// The keyed hash an opt-out is stored as (its own key: not the alias lookup hash).
pub fn opt_out_hash(keys: &Keys, address: &RealAddress) -> [u8; HASH_BYTES] {
    keys.mac(Purpose::OptOut, address.normalized().as_bytes())
}

/// The token of the opt-out link for `address`.
pub fn link_token(keys: &Keys, address: &RealAddress) -> String {
    let hash = opt_out_hash(keys, address);
    let mac = keys.mac(Purpose::OptOutLink, &hash);
    let mut raw = hash.to_vec();
    raw.extend_from_slice(&mac[..MAC_BYTES]);
    URL_SAFE_NO_PAD.encode(raw)
}

/// The opt-out hash a token stands for, when its MAC is right (compared in constant time).
pub fn verify(keys: &Keys, token: &str) -> Option<[u8; HASH_BYTES]> {
    if token.len() > 128 {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
    if raw.len() != HASH_BYTES + MAC_BYTES {
        return None;
    }
    let (hash, mac) = raw.split_at(HASH_BYTES);
    keys.verify_mac(Purpose::OptOutLink, hash, mac)
        .then(|| hash.try_into().expect("32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Domain;

    #[test]
    fn tokens_verify_only_with_their_key_and_mac() {
        let keys = Keys::from_master([9; 32]);
        let d = Domain::parse("remailer.test").unwrap();
        let a = RealAddress::parse("Eve@Example.org", &d).unwrap();
        let b = RealAddress::parse("eve@example.org", &d).unwrap();
        let t = link_token(&keys, &a);
        assert_eq!(t, link_token(&keys, &b), "normalised address");
        assert!(!t.contains("eve"));
        assert_eq!(verify(&keys, &t), Some(opt_out_hash(&keys, &b)));
        assert_eq!(verify(&Keys::from_master([8; 32]), &t), None);
        let mut raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        raw[3] ^= 1;
        assert_eq!(verify(&keys, &URL_SAFE_NO_PAD.encode(&raw)), None);
        assert_eq!(verify(&keys, "short"), None);
        assert_eq!(verify(&keys, &"A".repeat(500)), None);
        assert_ne!(
            opt_out_hash(&keys, &a),
            keys.address_hash(&a),
            "not the alias lookup hash"
        );
    }
}
