//! The dominator's HTTP side, on `--http` (default `:6970`):
//!
//! - `GET /`: the live status page: the fleet's summary and a table of
//!   every machine, kept up to date by `GET /live` without reloading.
//! - `GET /live`: server-sent events ([`crate::live`]): a `snapshot`,
//!   then `changes` after rounds and a `sample` for the chart every few
//!   seconds.
//! - `GET /history`: the chart's last hour of fleet counts as JSON
//!   ([`crate::history`]).
//! - `GET /machines/{host}`, `GET /images`, `GET /images/{name}`: a
//!   machine's page, the image list, an image's page ([`crate::pages`]).
//! - `GET /healthz`: `200 ok` once the replay is over and decisions are
//!   being made, `503 catching up` before.
//! - `GET /status`: the [`Status`](crate::status::Status) as JSON.
//! - `GET /metrics`: Prometheus metrics ([`crate::metrics`]).
//!
//! `/healthz`, `/status` and a 404 close the connection after answering,
//! as they always did, so the simplest scripts (one request, read to the
//! end) keep working. Handlers read the board under short locks and never wait for the
//! decision loop, so a slow browser cannot slow a round.

use std::convert::Infallible;
use std::sync::Arc;

use dom_bus::Bus;
use dom_web::axum::extract::{Path, State};
use dom_web::axum::http::header::{CACHE_CONTROL, CONNECTION, CONTENT_TYPE};
use dom_web::axum::http::StatusCode;
use dom_web::axum::response::sse::{Event, KeepAlive, Sse};
use dom_web::axum::response::{Html, IntoResponse, Response};
use dom_web::axum::routing::get;
use dom_web::axum::Router;
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use crate::live::{Feed, Frame};
use crate::pages;
use crate::status::Board;

/// The status page's own script.
const STATUS_JS: &str = include_str!("assets/status.js");
/// The status page's chart.
const CHART_JS: &str = include_str!("assets/chart.js");
/// The status page's body.
const STATUS_HTML: &str = include_str!("assets/status.html");

/// What the handlers share.
pub struct App {
    pub board: Arc<Board>,
    pub feed: Arc<Feed>,
    pub bus: Bus,
}

/// The listen address for `--http`: `:6970` means every interface.
pub use dom_web::listen_address;

/// Every route.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/status", get(status))
        .route("/live", get(live))
        .route("/machines/{host}", get(machine))
        .route("/images", get(images))
        .route("/images/{*name}", get(image))
        .route("/history", get(history))
        .route("/static/status.js", get(|| script(STATUS_JS)))
        .route("/static/chart.js", get(|| script(CHART_JS)))
        .merge(dom_web::metrics::route(app.board.metrics().registry()))
        .merge(dom_web::assets::routes())
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                [(CONNECTION, "close")],
                "not found\n",
            )
        })
        .with_state(app)
}

async fn index() -> Html<String> {
    let nav = &[
        ("/images", "images"),
        ("/metrics", "metrics"),
        ("/status", "JSON"),
    ];
    dom_web::page("dominator", nav, STATUS_HTML)
}

async fn script(body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    let (code, body) = if app.board.status().caught_up {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "catching up\n")
    };
    (
        code,
        [(CACHE_CONTROL, "no-store"), (CONNECTION, "close")],
        body,
    )
        .into_response()
}

async fn status(State(app): State<Arc<App>>) -> Response {
    (
        [
            (CONTENT_TYPE, "application/json"),
            (CACHE_CONTROL, "no-store"),
            (CONNECTION, "close"),
        ],
        app.board.to_json(),
    )
        .into_response()
}

async fn history(State(app): State<Arc<App>>) -> Response {
    (
        [
            (CONTENT_TYPE, "application/json"),
            (CACHE_CONTROL, "no-store"),
        ],
        app.feed.history_json(),
    )
        .into_response()
}

async fn machine(State(app): State<Arc<App>>, Path(host): Path<String>) -> Response {
    pages::machine(&app.board, &app.bus, &host).await
}

async fn images(State(app): State<Arc<App>>) -> Response {
    pages::images(&app.board, &app.bus).await
}

async fn image(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    pages::image(&app.board, &app.bus, &name).await
}

/// Counts a browser following the feed while it is connected.
struct Following(Arc<App>);

impl Following {
    fn new(app: Arc<App>) -> Self {
        app.board.metrics().clients(1);
        Self(app)
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        self.0.board.metrics().clients(-1);
    }
}

async fn live(State(app): State<Arc<App>>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (snapshot, frames) = app.feed.subscribe();
    let following = Following::new(app);
    let stream = futures::stream::unfold(
        (following, frames, Some(snapshot)),
        |(following, mut frames, pending)| async move {
            if let Some(frame) = pending {
                return Some((event(&frame), (following, frames, None)));
            }
            match frames.recv().await {
                Ok(frame) => Some((event(&frame), (following, frames, None))),
                // Too far behind: start again from a snapshot.
                Err(RecvError::Lagged(_)) => {
                    let (snapshot, fresh) = following.0.feed.subscribe();
                    Some((event(&snapshot), (following, fresh, None)))
                }
                Err(RecvError::Closed) => None,
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn event(frame: &Frame) -> Result<Event, Infallible> {
    Ok(Event::default().event(frame.event).data(&*frame.data))
}
