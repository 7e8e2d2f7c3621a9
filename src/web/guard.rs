//! The guard around every route: security headers on every response (a strict CSP, no
//! referrer, no sniffing, no framing; `no-store` unless the route chose its own caching;
//! `Onion-Location` when configured), and an error page in place of any plain-text answer a
//! lower layer gave (a rejected form body, an unknown route, a timeout, a panic). It also
//! counts every request in `remailer_web_requests_total{route,status}` by its route
//! pattern ([`route_pattern`] passes it out; never the path, which may hold a token), and
//! every 429 (a web limit) as `remailer_messages_refused_total{reason="rate_limit"}`.

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::page::{error_page, Rendered};

pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub async fn guard(State(web): State<super::State>, request: Request, next: Next) -> Response {
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut response = next.run(request).await;
    let status = response.status();
    let route = response
        .extensions()
        .get::<Route>()
        .map_or_else(|| "unmatched".to_string(), |r| r.0.as_str().to_string());
    crate::metrics::web_request(route, status.as_u16());
    if status == axum::http::StatusCode::TOO_MANY_REQUESTS {
        crate::metrics::refused(crate::metrics::Refusal::RateLimit);
    }
    if (status.is_client_error() || status.is_server_error())
        && response.extensions().get::<Rendered>().is_none()
    {
        let allow = response.headers().get(header::ALLOW).cloned();
        response = error_page(status).into_response();
        if let Some(allow) = allow {
            response.headers_mut().insert(header::ALLOW, allow);
        }
    }
    if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        // The rest of the body was not read: the connection cannot carry another request,
        // and saying so keeps a client from sending its next one on it (and losing it).
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    secure(
        &mut response,
        web.settings.web.onion_location.as_deref(),
        &path,
    );
    response
}

/// The route pattern a request matched, passed out in the response's extensions.
#[derive(Clone)]
struct Route(MatchedPath);

/// Runs inside the router on matched routes only, where the pattern is known.
pub async fn route_pattern(path: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if let Some(path) = path {
        response.extensions_mut().insert(Route(path));
    }
    response
}

/// Adds the headers every response carries.
pub fn secure(response: &mut Response<Body>, onion: Option<&str>, path: &str) {
    let h = response.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    if let Some(onion) = onion {
        let value = format!("{}{path}", onion.trim_end_matches('/'));
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(HeaderName::from_static("onion-location"), v);
        }
    }
}
