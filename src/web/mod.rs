//! `web`: the forms on `web.listen` (ARCHITECTURE.md §5). Server-rendered pages (maud), no
//! JavaScript, nothing from another origin: one stylesheet served here.
//!
//! One file per route group, each with a `routes()` merged in [`router`]: [`home`] (`/`,
//! `/healthz`, `/style.css`), [`register`] (`/register`, `/remove`), [`confirm`]
//! (`/confirm/{token}`), [`key`] (`/key`, a member's OpenPGP key), [`send`] (`/send`, the one-way form), [`optout`] (`/opt-out`,
//! `/opt-out/{token}`). Shared pieces: [`page`] (layout, error pages), [`form`] (CSRF,
//! fields), [`guard`] (security headers on every response, error pages for every plain
//! answer; the request metrics), [`server`] (connections, limits, graceful shutdown).
//! [`admin`] is the separate operator server on `admin.listen` (`/metrics`, `/healthz`).

pub mod admin;
pub mod confirm;
pub mod form;
pub mod guard;
pub mod home;
pub mod key;
pub mod optout;
pub mod page;
pub mod register;
pub mod send;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::address::Domain;
use crate::config::{Config, PrivacyConfig, WebConfig};
use crate::delivery::Delivery;
use crate::keys::Keys;
use crate::members::Members;
use crate::oneway::OneWay;
use crate::signup::Signup;
use crate::store::now_unix;

pub use page::{error_page, Page};
pub use server::ClientKey;

/// The parts of the configuration the web side uses, read once when the service starts.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `[web]`.
    pub web: WebConfig,
    pub domain: Domain,
    /// `[privacy]` (the home page says whether a send log is kept).
    pub privacy: PrivacyConfig,
    /// `web.operator`, or its default.
    pub operator: String,
}

impl Settings {
    pub fn of(config: &Config) -> Self {
        Settings {
            web: config.web.clone(),
            domain: config.domain.clone(),
            privacy: config.privacy.clone(),
            operator: config.operator(),
        }
    }
}

/// What every handler can reach.
pub struct Web {
    pub settings: Settings,
    pub keys: Arc<Keys>,
    pub members: Members,
    pub delivery: Delivery,
    pub signup: Signup,
    pub oneway: OneWay,
}

/// The state type of every route group.
pub type State = Arc<Web>;

impl Web {
    pub fn new(settings: Settings, keys: Arc<Keys>, members: Members, delivery: Delivery) -> Self {
        let signup = Signup::new(settings.web.clone(), members.clone(), delivery.clone());
        let oneway = OneWay::new(
            settings.web.clone(),
            settings.domain.clone(),
            settings.operator.clone(),
            members.clone(),
            keys.clone(),
            delivery.clone(),
        );
        Web {
            oneway,
            settings,
            keys,
            members,
            delivery,
            signup,
        }
    }

    /// A fresh CSRF token for the form posted to `form` (its path).
    pub fn csrf(&self, form: &str) -> String {
        form::csrf_token(&self.keys, form, now_unix())
    }

    /// The 403 page when the posted token is missing, forged, for another form or expired.
    pub fn check_csrf(&self, form: &str, token: &str) -> Result<(), Page> {
        if form::csrf_valid(&self.keys, form, token, now_unix()) {
            Ok(())
        } else {
            Err(error_page(StatusCode::FORBIDDEN))
        }
    }

    /// `{web.public_url}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.web.base_url())
    }
}

/// All routes with their limits and guards.
pub fn router(web: State) -> Router {
    let timeout = Duration::from_secs(web.settings.web.request_timeout);
    Router::new()
        .merge(home::routes())
        .merge(register::routes())
        .merge(confirm::routes())
        .merge(key::routes())
        .merge(send::routes())
        .merge(optout::routes())
        .route_layer(axum::middleware::from_fn(guard::route_pattern))
        .fallback(|| async { error_page(StatusCode::NOT_FOUND) })
        .method_not_allowed_fallback(|| async { error_page(StatusCode::METHOD_NOT_ALLOWED) })
        .layer(DefaultBodyLimit::max(web.settings.web.max_body))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a web handler panicked");
            error_page(StatusCode::INTERNAL_SERVER_ERROR).into_response()
        }))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            guard::guard,
        ))
        .with_state(web)
}
