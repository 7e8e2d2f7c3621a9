//! A plain HTTP client (reqwest, no redirects, no cookies) for the real web server, and the
//! helpers web tests share: the CSRF token of a served form, the token of a mailed link.

use std::time::Duration;

use super::{Service, Sink, SinkMode};

/// A service with `extra` config, its accepting sink and a web client for its forms.
pub async fn start(extra: &str) -> (Service, Sink, WebClient) {
    let sink = Sink::start(SinkMode::Accept).await;
    let svc = Service::start(sink.port, extra).await;
    let web = WebClient::new(svc.web_port);
    (svc, sink, web)
}

pub struct WebClient {
    pub base: String,
    http: reqwest::Client,
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl WebClient {
    pub fn new(port: u16) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        WebClient {
            base: format!("http://127.0.0.1:{port}"),
            http,
        }
    }

    async fn answer(r: reqwest::Response) -> Answer {
        Answer {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.text().await.expect("body"),
        }
    }

    pub async fn request(&self, method: &str, path: &str) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        Self::answer(r).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.request("GET", path).await
    }

    /// POSTs the fields as a form, as they are.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .form(fields)
            .send()
            .await
            .expect("post");
        Self::answer(r).await
    }

    /// POSTs a body larger than the service reads. The service answers 413 and closes without
    /// reading the rest, and the client may then see the connection reset before it reads the
    /// answer (unread data makes the close a reset), so a few attempts are made.
    pub async fn post_oversized(&self, path: &str, body: Vec<u8>) -> Answer {
        for _ in 0..8 {
            let sent = self
                .http
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.clone())
                .send()
                .await;
            if let Ok(r) = sent {
                return Self::answer(r).await;
            }
        }
        panic!("no answer to an oversized POST in 8 attempts");
    }

    /// POSTs a raw body with a content type.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Answer {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("post");
        Self::answer(r).await
    }

    /// Fills the form served at `page` like a browser: GETs it, takes its CSRF token and
    /// action, POSTs the fields with them.
    pub async fn submit(&self, page: &str, fields: &[(&str, &str)]) -> Answer {
        let form = self.get(page).await;
        assert_eq!(form.status, 200, "GET {page}: {}", form.body);
        let csrf = csrf_of(&form.body);
        let action = form_action(&form.body);
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("csrf", &csrf));
        self.post(&action, &all).await
    }
}

fn attribute_after<'a>(html: &'a str, marker: &str, attr: &str) -> Option<&'a str> {
    let at = html.find(marker)?;
    let rest = &html[at..];
    let start = rest.find(&format!("{attr}=\""))? + attr.len() + 2;
    let end = rest[start..].find('"')? + start;
    Some(&rest[start..end])
}

/// The CSRF token of the (first) form on a page.
pub fn csrf_of(html: &str) -> String {
    attribute_after(html, "name=\"csrf\"", "value")
        .expect("page has a CSRF field")
        .to_string()
}

/// The action of the (first) form on a page.
pub fn form_action(html: &str) -> String {
    attribute_after(html, "<form", "action")
        .expect("page has a form")
        .to_string()
}

/// The value an input field was filled with.
pub fn field_value(html: &str, name: &str) -> Option<String> {
    attribute_after(html, &format!("name=\"{name}\""), "value").map(str::to_string)
}

/// The token of the first `/confirm/TOKEN` link in a text.
pub fn confirm_token(text: &str) -> Option<String> {
    let at = text.find("/confirm/")? + "/confirm/".len();
    let token: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    (token.len() >= 32).then_some(token)
}
