//! `GET /confirm/{token}`: says what the link will do, with one button (a GET changes
//! nothing: link scanners follow links). `POST /confirm/{token}` does it. A used, expired or
//! mangled link gets a page that says what to do (410).

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State as Extract};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::html;
use serde::Deserialize;

use super::form::csrf_field;
use super::page::Page;
use super::register::failure;
use super::State;
use crate::signup::{Confirmed, PendingView};
use crate::store::PendingKind;

pub fn routes() -> Router<State> {
    Router::new().route("/confirm/{token}", get(show).post(confirm))
}

/// The CSRF form name of every confirmation page.
const FORM: &str = "/confirm";

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ConfirmFields {
    pub csrf: String,
}

async fn show(Extract(web): Extract<State>, Path(token): Path<String>) -> Response {
    match web.signup.peek(&token).await {
        Ok(Some(view)) => ask(&web, &token, &view).into_response(),
        Ok(None) => invalid().into_response(),
        Err(e) => failure(e),
    }
}

fn ask(web: &State, token: &str, view: &PendingView) -> Page {
    let (title, text, button) = match view.kind {
        PendingKind::Register => (
            "Activate your alias",
            format!(
                "Press the button to activate the alias {} for the address this link was mailed to.{}",
                view.alias,
                match view.lifetime {
                    Some(secs) => format!(
                        " It expires {} after activation: then it is refused and removed, and its name is never given out again.",
                        days(secs)
                    ),
                    None => " It does not expire.".into(),
                }
            ),
            "Activate",
        ),
        PendingKind::Key => (
            "Change your OpenPGP key",
            match &view.fingerprint {
                Some(fp) => format!("Press the button to set the OpenPGP key {fp} for the alias {}: mail to it will be encrypted to that key.", view.alias),
                None => format!("Press the button to remove the OpenPGP key of the alias {}: mail to it will arrive without encryption.", view.alias),
            },
            "Confirm",
        ),
        PendingKind::Remove => (
            "Remove your alias",
            format!("Press the button to remove the alias {}. Mail to it will be refused from then on, and the name is never given to anyone else.", view.alias),
            "Remove",
        ),
    };
    let action = format!("/confirm/{token}");
    Page::ok(
        title,
        html! {
            p { (text) }
            form method="post" action=(action) {
                (csrf_field(&web.csrf(FORM)))
                button type="submit" { (button) }
            }
        },
    )
}

async fn confirm(
    Extract(web): Extract<State>,
    Path(token): Path<String>,
    form: Result<Form<ConfirmFields>, FormRejection>,
) -> Response {
    let Form(f) = match form {
        Ok(f) => f,
        Err(rejection) => return rejection.into_response(),
    };
    if let Err(page) = web.check_csrf(FORM, &f.csrf) {
        return page.into_response();
    }
    match web.signup.confirm(&token).await {
        Ok(Confirmed::Registered(alias)) => Page::ok(
            "Your alias is active",
            html! {
                p.notice { "The alias " strong { (alias) } " is active. A welcome mail explains how to write from it and how to remove it." }
            },
        )
        .into_response(),
        Ok(Confirmed::Removed(alias)) => Page::ok(
            "Your alias is removed",
            html! {
                p.notice { "The alias " strong { (alias) } " is removed, with everything the service held for it. Mail to it is refused from now on." }
            },
        )
        .into_response(),
        Ok(Confirmed::KeyChanged(alias, fingerprint)) => Page::ok(
            "Your key is changed",
            html! {
                @match fingerprint {
                    Some(fp) => p.notice { "Mail to " strong { (alias) } " is encrypted to the key " code { (fp) } " from now on." },
                    None => p.notice { "The key of " strong { (alias) } " is removed; mail to it arrives without encryption from now on." },
                }
            },
        )
        .into_response(),
        Ok(Confirmed::AddressHasAlias) => Page::new(
            StatusCode::CONFLICT,
            "This address already has an alias",
            html! {
                p { "The address this link was mailed to has got an alias in the meantime, and an address can have one alias only. Nothing was changed." }
                p { "To use another name, first " a href="/remove" { "remove the current alias" } ", then " a href="/register" { "register again" } "." }
            },
        )
        .into_response(),
        Ok(Confirmed::Invalid) => invalid().into_response(),
        Err(e) => failure(e),
    }
}

/// "1 day", "30 days" (lifetimes on the form are whole days).
fn days(secs: i64) -> String {
    match secs / 86_400 {
        1 => "1 day".into(),
        n => format!("{n} days"),
    }
}

fn invalid() -> Page {
    Page::new(
        StatusCode::GONE,
        "This link does not work any more",
        html! {
            p { "The link was already used, has expired (links work for a limited time), or was copied incompletely. Nothing was changed." }
            p { "Start again: " a href="/register" { "register an alias" } " or " a href="/remove" { "remove your alias" } ". A new mail brings a new link." }
        },
    )
}
