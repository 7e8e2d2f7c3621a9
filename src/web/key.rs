//! `GET|POST /key` (fields `address` and `pgp_key`; an empty key removes the member's key):
//! a member sets, replaces or removes the OpenPGP key their mail is encrypted to, confirmed
//! by a mailed link (see [`crate::signup::Signup::request_key`] for which key that mail is
//! encrypted to). A key that cannot be used is refused with the reason (422); whatever the
//! address, an accepted form answers "check your mailbox".

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State as Extract};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::html;
use serde::Deserialize;

use super::form::{csrf_field, text_area, text_field, Errors, Field};
use super::page::Page;
use super::register::{check_mailbox, failure, parse_address, pgp_key};
use super::State;
use crate::encrypt::MAX_KEY_BYTES;

pub fn routes() -> Router<State> {
    Router::new().route("/key", get(key_form).post(key))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct KeyFields {
    pub address: String,
    pub pgp_key: String,
    pub csrf: String,
}

async fn key_form(Extract(web): Extract<State>) -> Page {
    key_page(
        &web,
        &KeyFields::default(),
        &Errors::default(),
        StatusCode::OK,
    )
}

fn key_page(web: &State, f: &KeyFields, errors: &Errors, status: StatusCode) -> Page {
    Page::new(
        status,
        "Your OpenPGP key",
        html! {
            p { "Give the real address your alias stands for and your OpenPGP public key. Mail to your alias, and the service's notices, are then encrypted to it. Leave the key empty to remove yours. We mail a link to confirm the change; while your current key works, that mail is encrypted to it." }
            form method="post" action="/key" {
                (csrf_field(&web.csrf("/key")))
                (text_field(&Field { name: "address", label: "Your real email address", kind: "email", value: &f.address, hint: "", required: true, max_len: 254 }, errors))
                (text_area(&Field { name: "pgp_key", label: "OpenPGP public key", kind: "", value: &f.pgp_key, hint: "The output of gpg --armor --export YOUR-ADDRESS; empty to remove your key.", required: false, max_len: MAX_KEY_BYTES }, errors))
                button type="submit" { "Send the confirmation link" }
            }
        },
    )
}

async fn key(
    Extract(web): Extract<State>,
    form: Result<Form<KeyFields>, FormRejection>,
) -> Response {
    let Form(f) = match form {
        Ok(f) => f,
        Err(rejection) => return rejection.into_response(),
    };
    if let Err(page) = web.check_csrf("/key", &f.csrf) {
        return page.into_response();
    }
    let mut errors = Errors::default();
    let real = parse_address(&f.address, &web.settings.domain.clone(), &mut errors);
    let pgp = pgp_key(&f.pgp_key, &mut errors);
    let Some(real) = real.filter(|_| errors.is_empty()) else {
        return key_page(&web, &f, &errors, StatusCode::UNPROCESSABLE_ENTITY).into_response();
    };
    match web.signup.request_key(&real, pgp).await {
        Ok(()) => check_mailbox("key change link").into_response(),
        Err(e) => failure(e),
    }
}
