//! `/metrics` in the Prometheus (OpenMetrics) text format.
use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use super::hub::Hub;

/// Renders the current counters. The pipeline's atomics are read into constant metrics per
/// scrape (scrapes are rare; the frame path stays free of metric bookkeeping), and the
/// latency histogram is the live one.
pub fn render(hub: &Hub) -> Result<String, std::fmt::Error> {
    let st = &hub.status;
    let mut r = Registry::with_prefix("hydranet");
    let counters = [
        (
            "frames_captured",
            "Frames the source delivered",
            st.captured.load(Relaxed),
        ),
        (
            "frames_dropped",
            "Frames captured but not run (inference busy)",
            st.dropped.load(Relaxed),
        ),
        (
            "frames_processed",
            "Frames run through the network",
            st.processed.load(Relaxed),
        ),
        (
            "source_reconnects",
            "Times the source was reopened after a failure",
            st.reconnects.load(Relaxed),
        ),
        (
            "clients_dropped_slow",
            "Clients cut off for not keeping up",
            hub.slow_dropped.load(Relaxed),
        ),
        (
            "requests_refused",
            "Requests refused (client limits, missing token)",
            hub.refused.load(Relaxed),
        ),
    ];
    for (name, help, v) in counters {
        r.register(name, help, ConstCounter::new(v));
    }
    let gauges = [
        (
            "stream_clients",
            "Connected MJPEG clients",
            hub.stream_clients.load(Relaxed) as i64,
        ),
        (
            "event_clients",
            "Connected Server-Sent Events clients",
            hub.event_clients.load(Relaxed) as i64,
        ),
        (
            "source_up",
            "1 while the source delivers frames",
            st.source_ok.load(Relaxed) as i64,
        ),
    ];
    for (name, help, v) in gauges {
        r.register(name, help, ConstGauge::new(v));
    }
    r.register(
        "pipeline_fps",
        "Processed frames per second over the last second",
        ConstGauge::new(hub.fps()),
    );
    r.register(
        "inference_seconds",
        "Time the network takes per frame",
        hub.latency.clone(),
    );
    let mut out = String::new();
    encode(&mut out, &r)?;
    Ok(out)
}
