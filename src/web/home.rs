//! `GET /` (what the service is and is not, in plain words), `GET /healthz` and
//! `GET /style.css`.

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use maud::html;

use super::page::{Page, STYLE};
use super::State;

pub fn routes() -> Router<State> {
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/style.css", get(style))
}

async fn index(axum::extract::State(web): axum::extract::State<State>) -> Page {
    let domain = web.settings.domain.as_str();
    Page::ok(
        format!("Aliases at {domain}"),
        html! {
            p {
                "This service gives you an alias, " code { "name@" (domain) } ", for your real email address. "
                "People you write to through it see only your alias; mail to your alias reaches you."
            }
            h2 { "What it protects, and what it does not" }
            p {
                "It is " strong { "pseudonymous, \u{201c}mostly anonymous\u{201d}" } ": the people you write to, and who write to you, "
                "do not learn your real address or your name. The operator of this service "
                strong { "does" } " hold the link between your alias and your real address, and so does anyone who "
                "compels, seizes or breaks into the server while it runs."
            }
            p {
                "It does not hide you from your own mail provider or the recipient's, from someone watching the "
                "server's traffic (who could match times and sizes), or from recipients who recognise what you write, "
                "your style, quoted text or the metadata of attachments. It is not a mixnet."
            }
            h2 { "What is recorded about your mail" }
            (send_log_notice(&web.settings.privacy))
            h2 { "How to use an alias" }
            ol {
                li { a href="/register" { "Register" } " an alias and your real address. You get a mail with a confirmation link; follow it and press the button." }
                li { "Write from your real address to another member's alias. They receive it from your alias, and their replies reach you." }
                li { "Optionally, give an OpenPGP public key when you register or " a href="/key" { "later" } ": mail to your alias and the service's notices then reach you encrypted to it (the subject too)." }
                li { "To stop, " a href="/remove" { "remove your alias" } ", again confirmed by mail. A removed alias is never given to anyone else." }
            }
            p { "Mail from addresses that are not registered is refused, with a note that points here." }
            h2 { "One anonymous message, without an alias" }
            p {
                "The " a href="/send" { "one-way form" } " sends a single plain-text message to any address that has not opted out. "
                "It cannot be answered. To receive no such messages, " a href="/opt-out" { "opt out" } "."
            }
        },
    )
}

/// Says plainly whether the send log is kept, and what that means for members.
fn send_log_notice(privacy: &crate::config::PrivacyConfig) -> maud::Markup {
    if privacy.send_log {
        let days = privacy.send_log_days;
        html! {
            p id="send-log" {
                strong { "This service keeps a send log." } " For every message it remails it records the time, "
                "the sender's alias, the recipient's alias, the size and whether it was delivered, and keeps this for "
                (days) " day" @if days != 1 { "s" } ", then deletes it. The log holds aliases only, never a real address, "
                "but while an entry exists the operator, and anyone who seizes or breaks into the server, can see which "
                "aliases wrote to which and when."
            }
        }
    } else {
        html! {
            p id="send-log" {
                strong { "This service keeps no send log." } " Once a message is delivered, nothing records which alias "
                "wrote to which, or when. The operational log names queue ids and counts, never an address, "
                "an alias pair or a mail domain."
            }
        }
    }
}

async fn healthz() -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "ok\n",
    )
}

async fn style() -> impl IntoResponse {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLE,
    )
}
