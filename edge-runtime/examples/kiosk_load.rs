//! Load test for a running kiosk on loopback: pipeline FPS with and without N video + N
//! event clients, the kiosk's RSS before and after, slow clients dropped, and hostile
//! requests (half-open connections, oversized headers, path traversal) during the load.
//!
//!   cargo run --release -p edge-runtime --example kiosk_load -- --addr 127.0.0.1:8080 --pid PID
//!
//! Plain blocking sockets and one thread per client: the load generator should not need
//! an async runtime to be believed.
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use clap::Parser;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// The kiosk.
    #[arg(long)]
    addr: SocketAddr,
    /// The kiosk's process id (for its RSS).
    #[arg(long)]
    pid: u32,
    /// Video clients, and as many event clients.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Seconds under load.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Seconds measured without clients, before and after.
    #[arg(long, default_value_t = 10)]
    baseline: u64,
}

fn get(addr: SocketAddr, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn metric(addr: SocketAddr, name: &str) -> f64 {
    get(addr, "/metrics")
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Processed frames per second over `secs`, from the kiosk's own counter.
fn fps(addr: SocketAddr, secs: u64) -> f64 {
    let t0 = Instant::now();
    let a = metric(addr, "hydranet_frames_processed_total");
    std::thread::sleep(Duration::from_secs(secs));
    let b = metric(addr, "hydranet_frames_processed_total");
    (b - a) / t0.elapsed().as_secs_f64()
}

/// A client that reads `path` until `stop`, counting bytes.
fn reader(addr: SocketAddr, path: &'static str, stop: Arc<AtomicBool>, bytes: Arc<AtomicU64>) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(format!("GET {path} HTTP/1.1\r\nHost: k\r\n\r\n").as_bytes())
        .is_err()
    {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Relaxed) {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                bytes.fetch_add(n as u64, Relaxed);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

fn main() {
    let a = Args::parse();
    let addr = a.addr;
    let rss_before = rss_mib(a.pid);
    let fps_before = fps(addr, a.baseline);

    let stop = Arc::new(AtomicBool::new(false));
    let video = Arc::new(AtomicU64::new(0));
    let events = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for _ in 0..a.clients {
        let (s, b) = (stop.clone(), video.clone());
        threads.push(std::thread::spawn(move || {
            reader(addr, "/stream.mjpg", s, b)
        }));
        let (s, b) = (stop.clone(), events.clone());
        threads.push(std::thread::spawn(move || reader(addr, "/events", s, b)));
    }
    // Five clients that connect to the video and never read: they must be dropped.
    let stalled: Vec<TcpStream> = (0..5)
        .filter_map(|_| {
            let mut s = TcpStream::connect(addr).ok()?;
            s.write_all(b"GET /stream.mjpg HTTP/1.1\r\nHost: k\r\n\r\n")
                .ok()?;
            Some(s)
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let clients_seen = (
        metric(addr, "hydranet_stream_clients"),
        metric(addr, "hydranet_event_clients"),
    );

    // Hostile requests while loaded.
    let half_open: Vec<TcpStream> = (0..20)
        .filter_map(|_| {
            let mut s = TcpStream::connect(addr).ok()?;
            s.write_all(b"GET / HTTP/1.1\r\nHost: k\r\nX-Slow: ").ok()?;
            Some(s)
        })
        .collect();
    let big = format!(
        "GET / HTTP/1.1\r\nHost: k\r\nX-Big: {}\r\n\r\n",
        "a".repeat(256 * 1024)
    );
    let oversized = {
        let mut s = TcpStream::connect(addr).expect("connect");
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(big.as_bytes());
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.lines().next().unwrap_or("(closed)").to_string()
    };
    let traversal: Vec<String> = [
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/app.js/../../Cargo.toml",
    ]
    .iter()
    .map(|p| {
        get(addr, p)
            .lines()
            .next()
            .unwrap_or("(closed)")
            .to_string()
    })
    .collect();

    let fps_loaded = fps(addr, a.seconds.saturating_sub(2).max(1));
    stop.store(true, Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let half_open_closed = half_open
        .into_iter()
        .filter(|s| {
            let mut s = s;
            let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
            let mut b = [0u8; 512];
            s.read(&mut b).is_ok()
        })
        .count();
    drop(stalled);
    std::thread::sleep(Duration::from_secs(1));
    let fps_after = fps(addr, a.baseline);
    let rss_after = rss_mib(a.pid);
    let report = json!({
        "clients": {"video": a.clients, "events": a.clients, "seen": [clients_seen.0, clients_seen.1]},
        "fps": {
            "before": fps_before,
            "loaded": fps_loaded,
            "after": fps_after,
            "loaded_vs_before": fps_loaded / fps_before,
        },
        "rss_mib": {"before": rss_before, "after": rss_after},
        "bytes_read": {"video": video.load(Relaxed), "events": events.load(Relaxed)},
        "clients_dropped_slow": metric(addr, "hydranet_clients_dropped_slow_total"),
        "requests_refused": metric(addr, "hydranet_requests_refused_total"),
        "hostile": {
            "oversized_headers": oversized,
            "traversal": traversal,
            "half_open_closed_by_server": format!("{half_open_closed}/20"),
        },
        "healthz_after": get(addr, "/healthz").lines().next().unwrap_or("").to_string(),
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
}
