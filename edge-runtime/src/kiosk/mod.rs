//! The camera kiosk: the pipeline on its own thread, a JPEG encoder on another, and a small
//! HTTP server (axum on a two-thread tokio runtime) serving one full-screen page.
//!
//! Safe by default: it binds to loopback unless told otherwise; requests reach only fixed
//! routes and embedded assets; every client has a bounded backlog; a connection that does
//! not send its request headers within 10 s, or does not read for 5 s, is closed; the
//! number of connections and of streaming clients is capped.
//!
//! [`hub`]: what the pipeline publishes and the encoder thread; [`sink`]: the pipeline's
//! sink that feeds the hub; [`overlay`]: the box drawn on streamed frames; [`http`]: the
//! routes and the page; [`metrics`]: `/metrics` for Prometheus.
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto::Builder,
    service::TowerToHyperService,
};
use models::heads::HeadKind;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;

use crate::{
    pipeline::{self, Status},
    source::{FrameSource, SourceError},
    Engine,
};

pub mod http;
pub mod hub;
pub mod metrics;
pub mod overlay;
pub mod sink;

/// Kiosk settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Token required on the data endpoints (`Authorization: Bearer` or `?token=`).
    pub token: Option<String>,
    /// Most frames per second encoded for the video stream.
    pub stream_fps: f32,
    /// JPEG quality (10..=100).
    pub jpeg_quality: u8,
    /// Most simultaneous video clients.
    pub max_stream_clients: usize,
    /// Most simultaneous event clients.
    pub max_event_clients: usize,
    /// Most open connections.
    pub max_connections: usize,
    /// A connection that cannot be written to for this long is closed.
    pub write_timeout: Duration,
    /// A connection must send its request headers within this time.
    pub header_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            stream_fps: 15.0,
            jpeg_quality: 75,
            max_stream_clients: 64,
            max_event_clients: 64,
            max_connections: 256,
            write_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the kiosk could not run.
#[derive(Debug, thiserror::Error)]
pub enum KioskError {
    /// The address is taken or not ours.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The async runtime did not start.
    #[error("cannot start the HTTP runtime: {0}")]
    Runtime(std::io::Error),
    /// The pipeline stopped with an error.
    #[error(transparent)]
    Pipeline(#[from] pipeline::PipelineError),
}

fn info_json(engine: &Engine, config: &pipeline::Config) -> serde_json::Value {
    let c = engine.contract();
    let heads: Vec<_> = c
        .heads
        .iter()
        .map(|h| match &h.kind {
            HeadKind::Regression { unit, min, max, .. } => {
                json!({"name": h.name, "kind": "regression", "unit": unit, "min": min, "max": max})
            }
            // The page shows its value like a regression's; `bins` says how it is read out.
            HeadKind::Distribution { unit, min, max, bins } => {
                json!({"name": h.name, "kind": "regression", "unit": unit, "min": min, "max": max, "bins": bins})
            }
            HeadKind::Binary { labels } => {
                json!({"name": h.name, "kind": "binary", "labels": labels})
            }
            HeadKind::Multiclass { labels } => {
                json!({"name": h.name, "kind": "multiclass", "labels": labels})
            }
        })
        .collect();
    json!({
        "model": {"name": c.model_name, "version": c.model_version, "architecture": c.architecture},
        "heads": heads,
        "guide_box": config.guide,
        // The page draws a box and an answer per face, or "No face".
        "detector": config.detector.as_ref().map(|p| p.display().to_string()),
        "max_faces": config.faces.cap,
    })
}

fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

async fn accept_loop(
    listener: std::net::TcpListener,
    app: axum::Router,
    hub: Arc<hub::Hub>,
    opts: Options,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let slots = Arc::new(Semaphore::new(opts.max_connections));
    let mut poll_stop = tokio::time::interval(Duration::from_millis(100));
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!("kiosk: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = poll_stop.tick() => {
                if stop.load(Relaxed) {
                    return Ok(());
                }
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            hub.refused.fetch_add(1, Relaxed);
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let mut io = TimeoutStream::new(tcp);
        io.set_write_timeout(Some(opts.write_timeout));
        let io = TokioIo::new(Box::pin(io));
        let service = TowerToHyperService::new(app.clone());
        let hub = hub.clone();
        let header_timeout = opts.header_timeout;
        tokio::spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(16 * 1024);
            if let Err(e) = builder.serve_connection(io, service).await {
                if is_timeout(&*e) {
                    hub.slow_dropped.fetch_add(1, Relaxed);
                }
            }
            drop(permit);
        });
    }
}

/// Runs the kiosk until `stop` is set. The pipeline runs with `keep_trying`, so a camera
/// that fails in any way is retried while the page shows "camera lost".
pub fn serve<O>(
    open: O,
    engine: &Engine,
    config: &pipeline::Config,
    opts: &Options,
    stop: Arc<AtomicBool>,
) -> Result<pipeline::Report, KioskError>
where
    O: FnMut() -> Result<Box<dyn FrameSource>, SourceError> + Send,
{
    let listener =
        std::net::TcpListener::bind(opts.listen).map_err(|source| KioskError::Listen {
            addr: opts.listen,
            source,
        })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| KioskError::Listen {
            addr: opts.listen,
            source,
        })?;
    let bound = listener.local_addr().unwrap_or(opts.listen);
    let status = Arc::new(Status::default());
    let hub = hub::Hub::new(status.clone(), opts.stream_fps, opts.jpeg_quality);
    let state = Arc::new(http::AppState {
        hub: hub.clone(),
        info: info_json(engine, config),
        token: opts.token.clone(),
        max_stream_clients: opts.max_stream_clients,
        max_event_clients: opts.max_event_clients,
    });
    let app = http::router(state);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("kiosk-http")
        .enable_all()
        .build()
        .map_err(KioskError::Runtime)?;
    let server = runtime.spawn(accept_loop(
        listener,
        app,
        hub.clone(),
        opts.clone(),
        stop.clone(),
    ));
    tracing::info!("kiosk: http://{bound}/");
    let encoder = {
        let hub = hub.clone();
        std::thread::Builder::new()
            .name("kiosk-jpeg".into())
            .spawn(move || hub.encode_loop())
            .map_err(KioskError::Runtime)?
    };
    let mut sink = sink::KioskSink::new(hub.clone());
    let config = pipeline::Config {
        keep_trying: true,
        ..config.clone()
    };
    // The pipeline sets `stop` when it ends; the kiosk outlives a finished source (a folder
    // played once) until it is told to stop, so it gets its own flag.
    let pipeline_stop = AtomicBool::new(false);
    let report = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Relaxed) && !pipeline_stop.load(Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            pipeline_stop.store(true, Relaxed);
        });
        let r = pipeline::run(open, engine, &config, &status, &pipeline_stop, &mut sink);
        while !stop.load(Relaxed) {
            sink_tick(&mut sink, &status);
            std::thread::sleep(Duration::from_millis(100));
        }
        pipeline_stop.store(true, Relaxed);
        r
    });
    hub.close();
    let _ = encoder.join();
    runtime.block_on(async {
        let _ = server.await;
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(report?)
}

fn sink_tick(sink: &mut sink::KioskSink, status: &Status) {
    use pipeline::Sink;
    sink.tick(status);
}
