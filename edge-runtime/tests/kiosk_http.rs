//! The kiosk's HTTP surface against hostile and careless clients: path traversal, oversized
//! and garbage requests, half-open connections, clients that never read, missing tokens,
//! client limits. Each must get a clear 4xx/5xx or a closed connection, and the kiosk must
//! keep serving.
#![cfg(feature = "kiosk")]
mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use common::Kiosk;
use hydranet_fixture::Fixture;

fn pattern_kiosk(extra: &[&str]) -> Kiosk {
    let fx = Fixture::load().unwrap();
    let mut args = vec!["--source", "pattern", "--width", "320", "--height", "240"];
    args.extend_from_slice(extra);
    Kiosk::start(&fx.model_path(), &args)
}

fn metric(k: &Kiosk, name: &str) -> f64 {
    let (_, body) = k.get("/metrics");
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn serves_the_page_and_data_and_refuses_everything_else() {
    let k = pattern_kiosk(&[]);
    for (path, kind) in [
        ("/", "text/html"),
        ("/app.js", "text/javascript"),
        ("/style.css", "text/css"),
        ("/api/info", "application/json"),
        ("/metrics", "openmetrics"),
    ] {
        let (code, text) = k.get(path);
        assert_eq!(code, 200, "{path}: {text}");
        assert!(text.to_ascii_lowercase().contains(kind), "{path}: {text}");
    }
    wait_until("a prediction", Duration::from_secs(10), || {
        k.get("/api/prediction").0 == 200
    });
    let (_, text) = k.get("/api/prediction");
    assert!(text.contains("\"smoothed\""), "{text}");
    let (code, text) = k.get("/healthz");
    assert_eq!(code, 200, "{text}");
    // No request path reaches the file system, whatever its spelling.
    for path in [
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/app.js/../../Cargo.toml",
        "/..%2f..%2fCargo.toml",
        "//etc/passwd",
        "/assets/index.html",
        "/src/kiosk/assets/app.js",
    ] {
        let (code, text) = k.get(path);
        assert!((400..500).contains(&code), "{path}: {code}");
        assert!(
            !text.contains("root:") && !text.contains("[package]"),
            "{path}: {text}"
        );
    }
    // Wrong methods and garbage.
    let (code, _) = k.raw(b"POST /api/prediction HTTP/1.1\r\nHost: k\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    assert_eq!(code, 405);
    let (code, _) = k.raw(b"\x16\x03\x01\x02\x00 garbage \r\n\r\n");
    assert_eq!(code, 400);
    let (code, _) = k.raw(b"GET / HTTP/9.9\r\n\r\n");
    assert!(code == 0 || (400..600).contains(&code), "{code}");
    // Oversized headers: refused or cut off, never served.
    let big = format!(
        "GET / HTTP/1.1\r\nHost: k\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let (code, _) = k.raw(big.as_bytes());
    assert!(
        code == 0 || code == 431 || code == 400,
        "oversized headers got {code}"
    );
    // Still serving.
    assert_eq!(k.get("/healthz").0, 200);
}

#[test]
fn half_open_and_stalled_clients_are_cut_off_and_counted() {
    let k = pattern_kiosk(&[
        "--header-timeout",
        "1",
        "--write-timeout",
        "1",
        "--stream-fps",
        "30",
        "--fps",
        "60",
    ]);
    // Half-open: headers never finished. The server closes it after the header timeout.
    let mut half = TcpStream::connect(k.addr).unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nHost: k\r\n").unwrap();
    half.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 256];
    let n = half.read(&mut buf).unwrap_or(0);
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "closed within the header timeout"
    );
    let reply = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || reply.contains("408"), "{reply}");
    // A video client that never reads: dropped once its socket stalls, and counted.
    let mut stalled = TcpStream::connect(k.addr).unwrap();
    stalled
        .write_all(b"GET /stream.mjpg HTTP/1.1\r\nHost: k\r\n\r\n")
        .unwrap();
    wait_until(
        "the stalled client to be dropped",
        Duration::from_secs(60),
        || metric(&k, "hydranet_clients_dropped_slow_total") >= 1.0,
    );
    wait_until(
        "the client count to fall back",
        Duration::from_secs(10),
        || metric(&k, "hydranet_stream_clients") == 0.0,
    );
    // The pipeline kept going all along.
    let before = metric(&k, "hydranet_frames_processed_total");
    std::thread::sleep(Duration::from_millis(500));
    assert!(metric(&k, "hydranet_frames_processed_total") > before);
    drop(stalled);
}

#[test]
fn tokens_guard_the_data_and_client_limits_hold() {
    let k = pattern_kiosk(&["--token", "s3cret", "--max-clients", "2"]);
    assert_eq!(k.get("/").0, 200, "the page needs no token");
    for path in [
        "/api/info",
        "/api/prediction",
        "/metrics",
        "/events",
        "/healthz",
    ] {
        assert_eq!(k.get(path).0, 401, "{path}");
        assert_eq!(k.get(&format!("{path}?token=wrong")).0, 401, "{path}");
    }
    let (code, _) = k.raw(b"GET /api/info HTTP/1.1\r\nHost: k\r\nAuthorization: Bearer s3cret\r\nConnection: close\r\n\r\n");
    assert_eq!(code, 200);
    assert_eq!(k.get("/api/info?token=s3cret").0, 200);
    // Two event clients are admitted; the third is told to come back later.
    let open = |path: &str| {
        let mut s = TcpStream::connect(k.addr).unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: k\r\n\r\n").as_bytes())
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        (s, String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let (_a, ra) = open("/events?token=s3cret");
    let (_b, rb) = open("/events?token=s3cret");
    let (_c, rc) = open("/events?token=s3cret");
    assert!(
        ra.starts_with("HTTP/1.1 200") && rb.starts_with("HTTP/1.1 200"),
        "{ra} {rb}"
    );
    assert!(rc.starts_with("HTTP/1.1 503"), "{rc}");
}
