//! `GET|POST /register` (fields `alias`, `address`, optional `display_name`, `expires`:
//! `1d`, `7d`, `30d` or `never`, the default; the alias expires that long after activation,
//! and optional `pgp_key`, an OpenPGP public key mail to the member is then encrypted to) and
//! `GET|POST /remove` (field `address`). Bad fields come back with the reason next to the
//! field and the form refilled (422; 409 for an alias that is taken, held or removed).
//! Whatever the address, an accepted form answers "check your mailbox": nobody can find out
//! from here who is a member.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State as Extract};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::html;
use serde::Deserialize;

use super::form::{csrf_field, text_area, text_field, Errors, Field};
use super::page::{error_page, Page};
use super::State;
use crate::address::{Alias, RealAddress};
use crate::encrypt::{PublicKey, MAX_KEY_BYTES};
use crate::signup::SignupError;

pub fn routes() -> Router<State> {
    Router::new()
        .route("/register", get(register_form).post(register))
        .route("/remove", get(remove_form).post(remove))
}

/// Longest display name accepted.
const DISPLAY_NAME_MAX: usize = 64;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RegisterFields {
    pub alias: String,
    pub address: String,
    pub display_name: String,
    pub expires: String,
    pub pgp_key: String,
    pub csrf: String,
}

/// The lifetimes the form offers (value, label); the first is the default.
const EXPIRY_CHOICES: [(&str, &str); 4] = [
    ("never", "Never"),
    ("1d", "After 1 day"),
    ("7d", "After 7 days"),
    ("30d", "After 30 days"),
];

/// The chosen lifetime in seconds (None: never), or the reason it is not one offered.
fn expiry(raw: &str, errors: &mut Errors) -> Option<i64> {
    match raw.trim() {
        "" | "never" => None,
        v @ ("1d" | "7d" | "30d") => crate::duration::parse_secs(v).ok().map(|s| s as i64),
        _ => {
            errors.add("expires", "choose 1 day, 7 days, 30 days or never");
            None
        }
    }
}

fn expiry_field(value: &str, errors: &Errors) -> maud::Markup {
    let error = errors.get("expires");
    let value = if value.trim().is_empty() {
        "never"
    } else {
        value.trim()
    };
    html! {
        label for="expires" { "Alias expires" }
        span.hint id="expires-hint" { "An expired alias is refused and removed with everything held for it; its name is never given out again." }
        @if let Some(e) = error { span.error id="expires-error" { (e) } }
        select id="expires" name="expires" aria-invalid=[error.map(|_| "true")] {
            @for (v, label) in EXPIRY_CHOICES {
                option value=(v) selected[v == value] { (label) }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RemoveFields {
    pub address: String,
    pub csrf: String,
}

async fn register_form(Extract(web): Extract<State>) -> Page {
    register_page(
        &web,
        &RegisterFields::default(),
        &Errors::default(),
        StatusCode::OK,
    )
}

fn register_page(web: &State, f: &RegisterFields, errors: &Errors, status: StatusCode) -> Page {
    let domain = web.settings.domain.as_str();
    let alias_hint = format!("Your alias will be NAME@{domain}: a-z, 0-9, '.', '-' and '_'.");
    Page::new(
        status,
        "Register an alias",
        html! {
            p { "Choose an alias and give the real address it stands for. We mail a confirmation link to that address; the alias is active once you follow it." }
            form method="post" action="/register" {
                (csrf_field(&web.csrf("/register")))
                (text_field(&Field { name: "alias", label: "Alias", kind: "text", value: &f.alias, hint: &alias_hint, required: true, max_len: 64 + 1 + domain.len() }, errors))
                (text_field(&Field { name: "address", label: "Your real email address", kind: "email", value: &f.address, hint: "Never shown to anyone you write to.", required: true, max_len: 254 }, errors))
                (text_field(&Field { name: "display_name", label: "Display name (optional)", kind: "text", value: &f.display_name, hint: "Shown next to your alias, e.g. \"Ann\". Leave empty for none.", required: false, max_len: DISPLAY_NAME_MAX }, errors))
                (expiry_field(&f.expires, errors))
                (text_area(&Field { name: "pgp_key", label: "OpenPGP public key (optional)", kind: "", value: &f.pgp_key, hint: "Paste the output of gpg --armor --export YOUR-ADDRESS. Mail to your alias, and the service's notices, are then encrypted to it; the confirmation link too.", required: false, max_len: MAX_KEY_BYTES }, errors))
                button type="submit" { "Register" }
            }
        },
    )
}

/// The OpenPGP key, if one was given and it is usable now.
pub(super) fn pgp_key(raw: &str, errors: &mut Errors) -> Option<PublicKey> {
    let key = raw.trim();
    if key.is_empty() {
        return None;
    }
    let now = crate::store::now_unix().max(0) as u64;
    match PublicKey::parse(key.as_bytes(), now) {
        Ok(k) => Some(k),
        Err(e) => {
            errors.add("pgp_key", e.to_string());
            None
        }
    }
}

/// The display name, if one was given and it is acceptable.
fn display_name(raw: &str, errors: &mut Errors) -> Option<String> {
    let name = raw.trim();
    if name.is_empty() {
        return None;
    }
    if name.chars().count() > DISPLAY_NAME_MAX {
        errors.add(
            "display_name",
            format!("at most {DISPLAY_NAME_MAX} characters"),
        );
    } else if name
        .chars()
        .any(|c| c.is_control() || matches!(c, '<' | '>' | '@' | '"' | '\\'))
    {
        errors.add(
            "display_name",
            "may not contain control characters, '<', '>', '@', '\"' or '\\'",
        );
    } else {
        return Some(name.to_string());
    }
    None
}

async fn register(
    Extract(web): Extract<State>,
    form: Result<Form<RegisterFields>, FormRejection>,
) -> Response {
    let Form(f) = match form {
        Ok(f) => f,
        Err(rejection) => return rejection.into_response(),
    };
    if let Err(page) = web.check_csrf("/register", &f.csrf) {
        return page.into_response();
    }
    let domain = web.settings.domain.clone();
    let mut errors = Errors::default();
    let alias = match Alias::parse(f.alias.trim(), &domain) {
        Ok(a) => Some(a),
        Err(e) => {
            errors.add("alias", e.to_string());
            None
        }
    };
    let real = parse_address(&f.address, &domain, &mut errors);
    let display = display_name(&f.display_name, &mut errors);
    let lifetime = expiry(&f.expires, &mut errors);
    let pgp = pgp_key(&f.pgp_key, &mut errors);
    let (Some(alias), Some(real)) = (alias, real) else {
        return register_page(&web, &f, &errors, StatusCode::UNPROCESSABLE_ENTITY).into_response();
    };
    if !errors.is_empty() {
        return register_page(&web, &f, &errors, StatusCode::UNPROCESSABLE_ENTITY).into_response();
    }
    match web
        .signup
        .request_register(&alias, &real, display, lifetime, pgp)
        .await
    {
        Ok(()) => check_mailbox("registration").into_response(),
        Err(e @ (SignupError::Taken | SignupError::Pending | SignupError::Removed)) => {
            errors.add("alias", e.to_string());
            register_page(&web, &f, &errors, StatusCode::CONFLICT).into_response()
        }
        Err(e) => failure(e),
    }
}

pub(super) fn parse_address(
    raw: &str,
    domain: &crate::address::Domain,
    errors: &mut Errors,
) -> Option<RealAddress> {
    let raw = raw.trim();
    if raw.is_empty() {
        errors.add("address", "enter your email address");
        return None;
    }
    match RealAddress::parse(raw, domain) {
        Ok(a) => Some(a),
        Err(e) => {
            errors.add("address", e.to_string());
            None
        }
    }
}

/// The answer to an accepted form, the same for every address.
pub(super) fn check_mailbox(what: &str) -> Page {
    Page::ok(
        "Check your mailbox",
        html! {
            p.notice { "If the address can get this " (what) ", a mail with a confirmation link is on its way to it. Open the link and press the button on its page. The link works once and expires." }
            p { "No mail after a few minutes? Look in the spam folder. Only a few confirmation mails are sent to one address per day." }
        },
    )
}

/// The page for a failure that is not the visitor's: 429 when the hourly budget is spent,
/// 503 when the database cannot be reached, 500 otherwise (the error is logged, without the
/// address).
pub fn failure(e: SignupError) -> Response {
    match e {
        SignupError::Busy => error_page(StatusCode::TOO_MANY_REQUESTS).into_response(),
        SignupError::Unavailable(e) => {
            tracing::error!(error = %e, "web request failed: store unavailable");
            error_page(StatusCode::SERVICE_UNAVAILABLE).into_response()
        }
        e => {
            tracing::error!(error = %e, "web request failed");
            error_page(StatusCode::INTERNAL_SERVER_ERROR).into_response()
        }
    }
}

async fn remove_form(Extract(web): Extract<State>) -> Page {
    remove_page(
        &web,
        &RemoveFields::default(),
        &Errors::default(),
        StatusCode::OK,
    )
}

fn remove_page(web: &State, f: &RemoveFields, errors: &Errors, status: StatusCode) -> Page {
    Page::new(
        status,
        "Remove your alias",
        html! {
            p { "Give the real address your alias stands for. We mail it a link; the alias is removed once you follow it and press the button. A removed alias is never given to anyone else." }
            form method="post" action="/remove" {
                (csrf_field(&web.csrf("/remove")))
                (text_field(&Field { name: "address", label: "Your real email address", kind: "email", value: &f.address, hint: "", required: true, max_len: 254 }, errors))
                button type="submit" { "Send the removal link" }
            }
        },
    )
}

async fn remove(
    Extract(web): Extract<State>,
    form: Result<Form<RemoveFields>, FormRejection>,
) -> Response {
    let Form(f) = match form {
        Ok(f) => f,
        Err(rejection) => return rejection.into_response(),
    };
    if let Err(page) = web.check_csrf("/remove", &f.csrf) {
        return page.into_response();
    }
    let mut errors = Errors::default();
    let Some(real) = parse_address(&f.address, &web.settings.domain.clone(), &mut errors) else {
        return remove_page(&web, &f, &errors, StatusCode::UNPROCESSABLE_ENTITY).into_response();
    };
    match web.signup.request_remove(&real).await {
        Ok(()) => check_mailbox("removal link").into_response(),
        Err(e) => failure(e),
    }
}
