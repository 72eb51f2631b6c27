//! The kiosk's HTTP surface: one page and its two assets (embedded), the MJPEG stream,
//! Server-Sent Events, and small JSON and Prometheus endpoints. Fixed routes only: no
//! request path ever reaches the file system.
use std::{
    convert::Infallible,
    sync::{atomic::Ordering::Relaxed, Arc},
    time::Duration,
};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
    routing::get,
    Json, Router,
};
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use super::hub::Hub;

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// Everything the handlers share.
pub struct AppState {
    /// The pipeline's published state.
    pub hub: Arc<Hub>,
    /// `/api/info`: model, heads, guide box, source.
    pub info: Value,
    /// Required on the JSON, event and metrics endpoints when set.
    pub token: Option<String>,
    /// Most simultaneous `/stream.mjpg` clients.
    pub max_stream_clients: usize,
    /// Most simultaneous `/events` clients.
    pub max_event_clients: usize,
}

/// The router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { page(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/app.js",
            get(|| async { page(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/style.css",
            get(|| async { page(STYLE, "text/css; charset=utf-8") }),
        )
        .route("/stream.mjpg", get(stream))
        .route("/events", get(events))
        .route("/api/prediction", get(prediction))
        .route("/api/info", get(info))
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

fn page(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// Constant-time comparison, so response timing says nothing about the token.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token check for the data endpoints (the page, its assets and the video need none:
/// a kiosk browser opens them without credentials).
async fn guard(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let protected =
        path.starts_with("/api/") || path == "/metrics" || path == "/events" || path == "/healthz";
    if let (true, Some(token)) = (protected, &s.token) {
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let query = req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .find_map(|kv| kv.strip_prefix("token="));
        let ok = [bearer, query]
            .into_iter()
            .flatten()
            .any(|t| same(t.as_bytes(), token.as_bytes()));
        if !ok {
            s.hub.refused.fetch_add(1, Relaxed);
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "token required\n",
            )
                .into_response();
        }
    }
    next.run(req).await
}

/// Decrements a client counter when the response (and so the connection's stream) ends.
struct ClientGuard {
    hub: Arc<Hub>,
    stream: bool,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        let c = if self.stream {
            &self.hub.stream_clients
        } else {
            &self.hub.event_clients
        };
        c.fetch_sub(1, Relaxed);
    }
}

fn admit(s: &AppState, stream: bool) -> Option<ClientGuard> {
    let (counter, max) = if stream {
        (&s.hub.stream_clients, s.max_stream_clients)
    } else {
        (&s.hub.event_clients, s.max_event_clients)
    };
    if counter.fetch_add(1, Relaxed) >= max {
        counter.fetch_sub(1, Relaxed);
        s.hub.refused.fetch_add(1, Relaxed);
        return None;
    }
    Some(ClientGuard {
        hub: s.hub.clone(),
        stream,
    })
}

fn busy() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "5")],
        "too many clients\n",
    )
        .into_response()
}

/// `multipart/x-mixed-replace` MJPEG: each client reads the newest encoded frame; one that
/// reads slowly skips frames, and one that stops reading is cut off by the write timeout.
async fn stream(State(s): State<Arc<AppState>>) -> Response {
    let Some(guard) = admit(&s, true) else {
        return busy();
    };
    let rx = s.hub.jpeg.subscribe();
    let parts =
        futures_util::stream::unfold((rx, guard, true), |(mut rx, guard, first)| async move {
            if !(first && rx.borrow().is_some()) && rx.changed().await.is_err() {
                return None;
            }
            let jpeg: Bytes = rx.borrow_and_update().clone()?;
            let mut part = BytesMut::with_capacity(jpeg.len() + 96);
            part.put_slice(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: ");
            part.put_slice(jpeg.len().to_string().as_bytes());
            part.put_slice(b"\r\n\r\n");
            part.put_slice(&jpeg);
            part.put_slice(b"\r\n");
            Some((Ok::<_, Infallible>(part.freeze()), (rx, guard, false)))
        });
    Response::builder()
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("multipart/x-mixed-replace; boundary=frame"),
        )
        .header(header::CACHE_CONTROL, "no-cache, no-store")
        .body(Body::from_stream(parts))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The counters the page shows and `/events` sends once a second.
pub fn status_json(hub: &Hub) -> Value {
    let st = &hub.status;
    json!({
        "source_ok": st.source_ok.load(Relaxed),
        "source": st.source.lock().ok().and_then(|s| s.clone()),
        "last_error": st.last_error.lock().ok().and_then(|s| s.clone()),
        "fps": (hub.fps() * 10.0).round() / 10.0,
        "captured": st.captured.load(Relaxed),
        "processed": st.processed.load(Relaxed),
        "dropped": st.dropped.load(Relaxed),
        "reconnects": st.reconnects.load(Relaxed),
        "clients": {
            "stream": hub.stream_clients.load(Relaxed),
            "events": hub.event_clients.load(Relaxed),
            "dropped_slow": hub.slow_dropped.load(Relaxed),
        },
    })
}

struct EventState {
    rx: tokio::sync::broadcast::Receiver<Arc<str>>,
    tick: tokio::time::Interval,
    hub: Arc<Hub>,
    _guard: ClientGuard,
}

/// Server-Sent Events: `prediction` for every processed frame, `status` every second. A
/// client that falls more than the backlog behind is dropped and counted.
async fn events(State(s): State<Arc<AppState>>) -> Response {
    let Some(guard) = admit(&s, false) else {
        return busy();
    };
    let state = EventState {
        rx: s.hub.events.subscribe(),
        tick: tokio::time::interval(Duration::from_secs(1)),
        hub: s.hub.clone(),
        _guard: guard,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        let event = tokio::select! {
            r = st.rx.recv() => match r {
                Ok(json) => Event::default().event("prediction").data(&*json),
                Err(RecvError::Lagged(_)) => {
                    st.hub.slow_dropped.fetch_add(1, Relaxed);
                    return None;
                }
                Err(RecvError::Closed) => return None,
            },
            _ = st.tick.tick() => Event::default().event("status").data(status_json(&st.hub).to_string()),
        };
        Some((Ok::<_, Infallible>(event), st))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn prediction(State(s): State<Arc<AppState>>) -> Response {
    let latest = s.hub.prediction.borrow().clone();
    match latest {
        Some(json) => (
            [(header::CONTENT_TYPE, "application/json")],
            json.to_string(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "no prediction yet"})),
        )
            .into_response(),
    }
}

async fn info(State(s): State<Arc<AppState>>) -> Json<Value> {
    let mut v = s.info.clone();
    v["source"] = json!(s.hub.status.source.lock().ok().and_then(|d| d.clone()));
    Json(v)
}

/// 200 while the camera delivers, 503 while it is lost (the process itself is alive).
async fn health(State(s): State<Arc<AppState>>) -> Response {
    let ok = s.hub.status.source_ok.load(Relaxed);
    let body = json!({
        "status": if ok { "ok" } else { "camera_lost" },
        "camera": status_json(&s.hub),
        "model": s.info["model"],
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    match super::metrics::render(&s.hub) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}
