//! `GET /metrics`: a [`prometheus_client`] registry in the OpenMetrics
//! text format, which Prometheus scrapes as it is.
//!
//! A service builds its [`Registry`] once at start (registering its
//! counters, gauges and histograms, each prefixed with the service's
//! name: `dominator_rounds_total`), updates the metrics where things
//! happen, and merges [`route`] into its router.

use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;

/// The content type of the text exposition.
pub const CONTENT_TYPE_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registry as text.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)
        .expect("writing to a String cannot fail");
    text
}

/// A router serving `GET /metrics` from `registry`.
pub fn route<S: Clone + Send + Sync + 'static>(registry: Arc<Registry>) -> Router<S> {
    Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move { ([(CONTENT_TYPE, CONTENT_TYPE_TEXT)], encode(&registry)).into_response() }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[tokio::test]
    async fn metrics_are_served_as_text() {
        let mut registry = Registry::default();
        let rounds = Counter::<u64>::default();
        registry.register("test_rounds", "Rounds run", rounds.clone());
        rounds.inc_by(3);
        let listener = crate::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(crate::serve(
            listener,
            route(Arc::new(registry)),
            std::future::pending(),
        ));
        let response = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[CONTENT_TYPE], CONTENT_TYPE_TEXT);
        let text = response.text().await.unwrap();
        assert!(text.contains("# TYPE test_rounds counter"), "{text}");
        assert!(text.contains("test_rounds_total 3"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        server.abort();
    }
}
