//! Pages: the common layout (one stylesheet from this origin, no script), the [`Page`]
//! response every handler returns, and the error pages (404, 405, 413, 429, 403, …) that
//! replace whatever plain answer a lower layer produced. No page ever shows a stack trace.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

/// Marks a response rendered by [`Page`], so the guard keeps it as it is.
#[derive(Clone, Copy)]
pub struct Rendered;

/// A full HTML page with its status code.
pub struct Page {
    pub status: StatusCode,
    pub title: String,
    pub body: Markup,
}

impl Page {
    pub fn new(status: StatusCode, title: impl Into<String>, body: Markup) -> Self {
        Page {
            status,
            title: title.into(),
            body,
        }
    }

    pub fn ok(title: impl Into<String>, body: Markup) -> Self {
        Self::new(StatusCode::OK, title, body)
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let html = layout(&self.title, self.body).into_string();
        let mut response = (self.status, html).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        response.extensions_mut().insert(Rendered);
        response
    }
}

/// The common layout: a header with the service's name, the page, and links to the forms.
pub fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " — remailer" }
                link rel="stylesheet" href="/style.css";
            }
            body {
                header {
                    a.home href="/" { "remailer" }
                    nav {
                        a href="/register" { "Register" }
                        " "
                        a href="/remove" { "Remove" }
                        " "
                        a href="/send" { "Send" }
                        " "
                        a href="/opt-out" { "Opt out" }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The page for an error status: what happened and what to do, never internals.
pub fn error_page(status: StatusCode) -> Page {
    let (title, text) = match status.as_u16() {
        400 => ("Bad request", "The request could not be read. Go back and submit the form again."),
        403 => ("Form expired", "This form was too old or did not come from this site. Go back, reload the page and submit it again."),
        404 => ("Not found", "There is no page at this address."),
        405 => ("Method not allowed", "This page does not accept that kind of request. Use the links and forms of this site."),
        408 => ("Too slow", "The request took too long to arrive. Try again."),
        413 => ("Too large", "What you sent is larger than this site accepts. Shorten it and try again."),
        415 => ("Bad request", "Submit the form from this site; it sends what the server expects."),
        422 => ("Bad request", "Some fields could not be read. Go back and check the form."),
        429 => ("Too many requests", "The service is handling too many requests right now. Wait a while (an hour at most) and try again."),
        431 => ("Too large", "The request headers are too large."),
        503 => ("Busy", "The service is busy. Try again in a moment."),
        _ if status.is_server_error() => ("Something went wrong", "The service could not handle this request. Nothing was changed; try again later."),
        _ => ("Error", "The request could not be handled."),
    };
    Page::new(
        status,
        title,
        html! { p { (text) } p { a href="/" { "Back to the start page" } } },
    )
}

/// The stylesheet: small, readable at 320 px, no fonts or images from anywhere.
pub const STYLE: &str = "\
*{box-sizing:border-box}\n\
body{margin:0 auto;max-width:42rem;padding:0 1rem 2rem;font:1rem/1.5 system-ui,sans-serif;color:#1a1a1a;background:#fff}\n\
header{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:baseline;gap:.5rem;padding:.75rem 0;border-bottom:1px solid #ccc}\n\
header a{color:#1a1a1a}\n\
.home{font-weight:bold;text-decoration:none}\n\
h1{font-size:1.5rem;line-height:1.25}\n\
label{display:block;font-weight:bold;margin-top:1rem}\n\
input[type=text],input[type=email],textarea{display:block;width:100%;padding:.5rem;font:inherit;border:1px solid #767676;border-radius:3px}\n\
textarea{min-height:10rem}\n\
.hint{display:block;font-size:.9rem;color:#555}\n\
.error{display:block;color:#a00;font-weight:bold}\n\
[aria-invalid=true]{border-color:#a00;border-width:2px}\n\
button{margin-top:1.25rem;padding:.6rem 1.2rem;font:inherit;border:0;border-radius:3px;background:#1d4e89;color:#fff;cursor:pointer}\n\
.notice{padding:.75rem;border-left:4px solid #1d4e89;background:#eef3f9}\n\
code{word-break:break-all}\n";
