//! `GET|POST /send`: the one-way anonymous form (fields `to`, `subject`, `body`). A refusal
//! (see [`crate::oneway::Refusal`]) comes back with its reason next to the field and the form
//! refilled: 422 for what was typed, 429 for a limit, 404 when the form is switched off.

use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, Form, State as Extract};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::html;
use serde::Deserialize;

use super::form::{csrf_field, text_area, text_field, Errors, Field};
use super::page::Page;
use super::{ClientKey, State};
use crate::oneway::{Draft, Refusal, MAX_SUBJECT};

pub fn routes() -> Router<State> {
    Router::new().route("/send", get(send_form).post(send))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SendFields {
    pub to: String,
    pub subject: String,
    pub body: String,
    pub csrf: String,
}

async fn send_form(Extract(web): Extract<State>) -> Page {
    if !web.oneway.enabled() {
        return switched_off();
    }
    send_page(
        &web,
        &SendFields::default(),
        &Errors::default(),
        None,
        StatusCode::OK,
    )
}

fn switched_off() -> Page {
    Page::new(
        StatusCode::NOT_FOUND,
        "The one-way form is switched off",
        html! { p { (Refusal::Disabled.to_string()) } p { a href="/" { "Back to the start page" } } },
    )
}

fn send_page(
    web: &State,
    f: &SendFields,
    errors: &Errors,
    general: Option<&str>,
    status: StatusCode,
) -> Page {
    let max_body = web.settings.web.one_way_max_body;
    let body_hint = format!("Plain text, at most {max_body} bytes.");
    Page::new(
        status,
        "Send a one-way anonymous message",
        html! {
            p { "Write one plain-text message to one address. It comes from "
                code { (crate::oneway::NO_REPLY) "@" (web.settings.domain) }
                ", which accepts no mail: the recipient cannot reply, and the service keeps no record of who sent it. "
                "The message ends with a note saying that it came through this form, who runs it, and how to receive no more." }
            p { "Addresses that have " a href="/opt-out" { "opted out" } " receive nothing from this form." }
            @if let Some(text) = general { p.error role="alert" { (text) } }
            form method="post" action="/send" {
                (csrf_field(&web.csrf("/send")))
                (text_field(&Field { name: "to", label: "To", kind: "email", value: &f.to, hint: "One email address.", required: true, max_len: 254 }, errors))
                (text_field(&Field { name: "subject", label: "Subject", kind: "text", value: &f.subject, hint: "", required: false, max_len: MAX_SUBJECT }, errors))
                (text_area(&Field { name: "body", label: "Message", kind: "text", value: &f.body, hint: &body_hint, required: true, max_len: max_body }, errors))
                button type="submit" { "Send" }
            }
        },
    )
}

async fn send(
    Extract(web): Extract<State>,
    Extension(client): Extension<ClientKey>,
    form: Result<Form<SendFields>, FormRejection>,
) -> Response {
    let Form(f) = match form {
        Ok(f) => f,
        Err(rejection) => return rejection.into_response(),
    };
    if !web.oneway.enabled() {
        return switched_off().into_response();
    }
    if let Err(page) = web.check_csrf("/send", &f.csrf) {
        return page.into_response();
    }
    let draft = Draft {
        to: f.to.clone(),
        subject: f.subject.clone(),
        body: f.body.clone(),
    };
    match web.oneway.send(&draft, &client.0).await {
        Ok(_) => Page::ok(
            "Your message is on its way",
            html! {
                p.notice { "The message was accepted and is being delivered. Nothing links it to you; it cannot be answered." }
                p { a href="/send" { "Write another message" } }
            },
        )
        .into_response(),
        Err(refusal) => refused(&web, &f, &refusal).into_response(),
    }
}

/// The form again, refilled, with the reason next to its field (or above the form).
fn refused(web: &State, f: &SendFields, refusal: &Refusal) -> Page {
    let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let text = refusal.to_string();
    let mut errors = Errors::default();
    match refusal.field() {
        Some(field) => {
            errors.add(field, text);
            send_page(web, f, &errors, None, status)
        }
        None => send_page(web, f, &errors, Some(&text), status),
    }
}
