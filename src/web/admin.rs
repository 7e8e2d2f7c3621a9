//! The operator's server on `admin.listen` (default `127.0.0.1:9090`; empty: off), apart
//! from the public forms: `GET /metrics` (Prometheus text format, the set named in
//! [`crate::metrics`]) and `GET /healthz` (`ok`). Plain HTTP/1.1; keep it on loopback or
//! behind a firewall, it has no authentication. The queue gauges are read when scraped.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::delivery::Delivery;

#[derive(Clone)]
struct Admin {
    handle: &'static PrometheusHandle,
    delivery: Delivery,
}

/// The admin routes.
pub fn router(handle: &'static PrometheusHandle, delivery: Delivery) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(Admin { handle, delivery })
}

async fn metrics(State(admin): State<Admin>) -> impl IntoResponse {
    let (length, oldest) = admin.delivery.queue_stats();
    crate::metrics::queue(length, oldest as f64);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        admin.handle.render(),
    )
}

async fn healthz() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "ok\n",
    )
}

/// Serves the admin routes on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, app: Router, mut stop: watch::Receiver<bool>) {
    let shutdown = async move {
        let _ = stop.changed().await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::warn!(error = %e, "admin server stopped");
    }
}
