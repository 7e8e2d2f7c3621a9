//! Recipient opt-out from one-way mail. `GET|POST /opt-out` (field `address`) mails a link
//! to the address and answers "check your mailbox" whatever the address. The link, and the
//! one in every one-way message's footer and `List-Unsubscribe` header, is
//! `/opt-out/{token}`: `GET` shows one button and changes nothing; `POST` records the
//! opt-out. The token itself proves receipt, so that POST needs no CSRF token: it is the
//! RFC 8058 one-click POST (`List-Unsubscribe=One-Click`) that mail providers send.

use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, Form, Path, State as Extract};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::html;
use serde::Deserialize;

use super::form::{csrf_field, text_field, Errors, Field};
use super::page::{error_page, Page};
use super::{ClientKey, State};
use crate::oneway::Refusal;

pub fn routes() -> Router<State> {
    Router::new()
        .route("/opt-out", get(opt_out_form).post(opt_out))
        .route("/opt-out/{token}", get(show).post(confirm))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct OptOutFields {
    pub address: String,
    pub csrf: String,
}

async fn opt_out_form(Extract(web): Extract<State>) -> Page {
    opt_out_page(
        &web,
        &OptOutFields::default(),
        &Errors::default(),
        None,
        StatusCode::OK,
    )
}

fn opt_out_page(
    web: &State,
    f: &OptOutFields,
    errors: &Errors,
    general: Option<&str>,
    status: StatusCode,
) -> Page {
    Page::new(
        status,
        "Receive no anonymous messages",
        html! {
            p { "Give your address, and it will never again receive messages from this service's "
                a href="/send" { "one-way anonymous form" }
                ". We mail it a link to confirm; the address is stored only as a keyed hash." }
            p { "Every message from the form also ends with such a link: following it and pressing its button is enough." }
            @if let Some(text) = general { p.error role="alert" { (text) } }
            form method="post" action="/opt-out" {
                (csrf_field(&web.csrf("/opt-out")))
                (text_field(&Field { name: "address", label: "Your email address", kind: "email", value: &f.address, hint: "", required: true, max_len: 254 }, errors))
                button type="submit" { "Send the confirmation link" }
            }
        },
    )
}

async fn opt_out(
    Extract(web): Extract<State>,
    Extension(client): Extension<ClientKey>,
    form: Result<Form<OptOutFields>, FormRejection>,
) -> Response {
    let Form(f) = match form {
        Ok(f) => f,
        Err(rejection) => return rejection.into_response(),
    };
    if let Err(page) = web.check_csrf("/opt-out", &f.csrf) {
        return page.into_response();
    }
    match web.oneway.request_opt_out(&f.address, &client.0).await {
        Ok(()) => Page::ok(
            "Check your mailbox",
            html! {
                p.notice { "A mail with a confirmation link is on its way to the address. Open the link and press the button on its page." }
                p { "No mail after a few minutes? Look in the spam folder. Only a few of these mails are sent to one address per day." }
            },
        )
        .into_response(),
        Err(refusal) => {
            let status =
                StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
            let text = refusal.to_string();
            let mut errors = Errors::default();
            if refusal.field().is_some() {
                errors.add("address", text);
                opt_out_page(&web, &f, &errors, None, status).into_response()
            } else {
                opt_out_page(&web, &f, &errors, Some(&text), status).into_response()
            }
        }
    }
}

async fn show(Extract(web): Extract<State>, Path(token): Path<String>) -> Page {
    if !web.oneway.opt_outs().token_valid(&token) {
        return invalid();
    }
    let action = format!("/opt-out/{token}");
    Page::ok(
        "Receive no anonymous messages",
        html! {
            p { "Press the button, and the address this link was mailed to will never again receive messages from this service's one-way anonymous form." }
            form method="post" action=(action) {
                input type="hidden" name="List-Unsubscribe" value="One-Click";
                button type="submit" { "Opt out" }
            }
        },
    )
}

/// The button, or a mail provider's RFC 8058 one-click POST. The body is not needed (the
/// token is the proof), so it is not read.
async fn confirm(Extract(web): Extract<State>, Path(token): Path<String>) -> Response {
    match web.oneway.confirm_opt_out(&token).await {
        Ok(true) => Page::ok(
            "You have opted out",
            html! {
                p.notice { "This address will receive no more messages from the one-way anonymous form." }
            },
        )
        .into_response(),
        Ok(false) => invalid().into_response(),
        Err(Refusal::Temporary) | Err(_) => {
            error_page(StatusCode::SERVICE_UNAVAILABLE).into_response()
        }
    }
}

fn invalid() -> Page {
    Page::new(
        StatusCode::NOT_FOUND,
        "This link does not work",
        html! {
            p { "The link was copied incompletely or did not come from this service. Nothing was changed." }
            p { "Copy the whole link from the mail, or " a href="/opt-out" { "ask for a new one" } "." }
        },
    )
}
