//! Forms: the stateless CSRF token (an HMAC over the form's name and an expiry, in a hidden
//! field; no cookie), field errors, and the markup of labelled fields that show their error
//! next to them and keep what was typed.
//!
//! Adding a form route: a `#[derive(Deserialize, Default)] #[serde(default)]` struct with the
//! fields and `csrf`; a render function `fn page(&Web, &Fields, &Errors, StatusCode) -> Page`
//! built from [`text_field`] and [`csrf_field`]; the POST handler takes
//! `Result<Form<Fields>, FormRejection>`, returns the rejection as it is (the guard turns it
//! into a 400/413 page), calls [`Web::check_csrf`], fills an [`Errors`] and re-renders with
//! 422 when it is not empty. See `register.rs`.

use maud::{html, Markup};
use subtle::ConstantTimeEq;

use crate::keys::{Keys, Purpose};

/// How long a form stays valid after it was served.
pub const CSRF_LIFETIME_SECS: i64 = 4 * 3600;

/// The token for the form `form` (its path), valid until `now + CSRF_LIFETIME_SECS`.
pub fn csrf_token(keys: &Keys, form: &str, now: i64) -> String {
    let expires = now + CSRF_LIFETIME_SECS;
    format!(
        "{expires:x}-{}",
        hex::encode(&csrf_mac(keys, form, expires)[..16])
    )
}

/// Checks a token for `form`: well formed, signed by this service, not expired.
pub fn csrf_valid(keys: &Keys, form: &str, token: &str, now: i64) -> bool {
    let Some((expires, mac)) = token.split_once('-') else {
        return false;
    };
    let (Ok(expires), Ok(mac)) = (i64::from_str_radix(expires, 16), hex::decode(mac)) else {
        return false;
    };
    if mac.len() != 16 || expires <= now || expires > now + CSRF_LIFETIME_SECS {
        return false;
    }
    bool::from(csrf_mac(keys, form, expires)[..16].ct_eq(&mac))
}

fn csrf_mac(keys: &Keys, form: &str, expires: i64) -> [u8; 32] {
    keys.mac(Purpose::Csrf, format!("{form}\n{expires}").as_bytes())
}

/// The hidden CSRF field of a form.
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// What is wrong with which field, in the order found.
#[derive(Debug, Default)]
pub struct Errors(Vec<(&'static str, String)>);

impl Errors {
    pub fn add(&mut self, field: &'static str, message: impl Into<String>) {
        self.0.push((field, message.into()));
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, m)| m.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One labelled input: `kind` is `text` or `email`; the error (if any) sits under the label
/// and the field keeps `value`.
pub struct Field<'a> {
    pub name: &'a str,
    pub label: &'a str,
    pub kind: &'a str,
    pub value: &'a str,
    pub hint: &'a str,
    pub required: bool,
    pub max_len: usize,
}

pub fn text_field(f: &Field, errors: &Errors) -> Markup {
    let error = errors.get(f.name);
    let id_hint = format!("{}-hint", f.name);
    let id_error = format!("{}-error", f.name);
    html! {
        label for=(f.name) { (f.label) }
        @if !f.hint.is_empty() { span.hint id=(id_hint) { (f.hint) } }
        @if let Some(e) = error { span.error id=(id_error) { (e) } }
        input type=(f.kind) id=(f.name) name=(f.name) value=(f.value)
            maxlength=(f.max_len) required[f.required] autocomplete="off"
            aria-invalid=[error.map(|_| "true")]
            aria-describedby=[error.map(|_| id_error.as_str())];
    }
}

/// A multi-line labelled field, same rules as [`text_field`].
pub fn text_area(f: &Field, errors: &Errors) -> Markup {
    let error = errors.get(f.name);
    let id_error = format!("{}-error", f.name);
    html! {
        label for=(f.name) { (f.label) }
        @if !f.hint.is_empty() { span.hint { (f.hint) } }
        @if let Some(e) = error { span.error id=(id_error) { (e) } }
        textarea id=(f.name) name=(f.name) maxlength=(f.max_len) required[f.required]
            aria-invalid=[error.map(|_| "true")]
            aria-describedby=[error.map(|_| id_error.as_str())] { (f.value) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_are_bound_to_form_key_and_time() {
        let keys = Keys::from_master([3; 32]);
        let t = csrf_token(&keys, "/register", 1000);
        assert!(csrf_valid(&keys, "/register", &t, 1000));
        assert!(!csrf_valid(&keys, "/remove", &t, 1000));
        assert!(!csrf_valid(
            &keys,
            "/register",
            &t,
            1000 + CSRF_LIFETIME_SECS
        ));
        assert!(!csrf_valid(
            &Keys::from_master([4; 32]),
            "/register",
            &t,
            1000
        ));
        assert!(!csrf_valid(&keys, "/register", "", 1000));
        assert!(!csrf_valid(&keys, "/register", "zz-zz", 1000));
        let mut forged = t.clone();
        forged.replace_range(0..1, "f");
        assert!(!csrf_valid(&keys, "/register", &forged, 1000));
    }
}
