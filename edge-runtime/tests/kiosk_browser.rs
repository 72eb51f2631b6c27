//! The kiosk in a real browser: headless Chromium driven through chromedriver. Needs
//! Debian's `chromium` and `chromium-driver`: scripts/test.sh installs them and sets
//! HYDRANET_REQUIRE_BROWSER=1, under which a missing browser is a failure; elsewhere the
//! test says it is skipped. Built on x86_64 only (its dev-dependencies are x86_64-only).
#![cfg(all(target_arch = "x86_64", feature = "kiosk"))]
mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{free_port, Kiosk};
use fantoccini::{Client, ClientBuilder};
use hydranet_fixture::{utkface_dir, Fixture, SHARED_FACES};
use serde_json::{json, Value};

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn artifacts() -> PathBuf {
    let dir = std::env::var_os("HYDRANET_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&dir).expect("artifact folder");
    dir
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.expect("script runs")
}

/// Polls `script` until it returns true.
async fn wait_for(c: &Client, script: &str, what: &str, limit: Duration) {
    let t0 = Instant::now();
    loop {
        if js(c, script).await == json!(true) {
            return;
        }
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the page says: (age, gender, ethnicity).
async fn answer(c: &Client) -> (String, String, String) {
    let v = js(
        c,
        "const t = id => (document.getElementById(id) || {}).textContent || '';
         return [t('age'), t('gender-label'), t('ethnicity-label')];",
    )
    .await;
    let s = |i: usize| v[i].as_str().unwrap_or_default().to_string();
    (s(0), s(1), s(2))
}

async fn screenshot(c: &Client, name: &str) -> PathBuf {
    let png = c.screenshot().await.expect("screenshot");
    let path = artifacts().join(name);
    std::fs::write(&path, png).expect("writing the screenshot");
    eprintln!("screenshot: {}", path.display());
    path
}

fn copy_faces(dir: &Path, names: &[&str]) {
    for (i, n) in names.iter().enumerate() {
        std::fs::copy(utkface_dir().join(n), dir.join(format!("{i}.jpg"))).expect("face");
    }
}

fn have_chromedriver() -> bool {
    Command::new("chromedriver")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "current_thread")]
async fn the_page_is_live_follows_the_source_and_shows_a_lost_camera() {
    if !have_chromedriver() {
        assert!(
            std::env::var_os("HYDRANET_REQUIRE_BROWSER").is_none(),
            "chromedriver not found (apt-get install chromium chromium-driver)"
        );
        eprintln!("SKIPPED: no chromedriver (apt-get install chromium chromium-driver)");
        return;
    }
    let fx = Fixture::load().unwrap();
    let faces = tempfile::tempdir().unwrap();
    // Two real faces the fixture model labels differently (Asian, Black: see fixture.json),
    // each held for 2 s, in a loop; the guide box is the whole 200x200 crop, so the network
    // sees what the fixture saw.
    copy_faces(faces.path(), &[SHARED_FACES[0], SHARED_FACES[2]]);
    let source = format!("dir:{}", faces.path().display());
    let kiosk = Kiosk::start(
        &fx.model_path(),
        &[
            "--source",
            &source,
            "--hold",
            "2",
            "--fps",
            "20",
            "--guide-box",
            "0.5,0.5,1",
        ],
    );

    let port = free_port();
    let driver = Driver(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian: apt-get install chromium chromium-driver)"),
    );
    let caps: serde_json::Map<String, Value> = serde_json::from_value(json!({
        "goog:chromeOptions": {
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,720"]
        }
    }))
    .unwrap();
    let t0 = Instant::now();
    let client = loop {
        let connector = hyper_util_connector();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => break c,
            Err(e) => {
                assert!(t0.elapsed() < Duration::from_secs(20), "chromedriver: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };

    client.goto(&kiosk.url("/")).await.expect("open the page");
    wait_for(
        &client,
        "return document.body.dataset.state === 'live';",
        "the live state",
        Duration::from_secs(20),
    )
    .await;
    // The video is live: the stream's image decoded, and frame numbers advance.
    wait_for(
        &client,
        "const v = document.getElementById('video'); return v.complete && v.naturalWidth > 0;",
        "a decoded video frame",
        Duration::from_secs(10),
    )
    .await;
    let frame = |v: Value| v.as_str().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let f1 = frame(
        js(
            &client,
            "return document.getElementById('frame').textContent;",
        )
        .await,
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let f2 = frame(
        js(
            &client,
            "return document.getElementById('frame').textContent;",
        )
        .await,
    );
    assert!(f2 > f1, "frame numbers advance on the page: {f1} -> {f2}");

    // The answers follow the source: each face's own label shows up in turn.
    let mut seen = std::collections::BTreeSet::new();
    let t0 = Instant::now();
    let both = |s: &std::collections::BTreeSet<(String, String, String)>| {
        ["Asian", "Black"]
            .iter()
            .all(|e| s.iter().any(|a| a.2 == *e))
    };
    while !both(&seen) && t0.elapsed() < Duration::from_secs(20) {
        let a = answer(&client).await;
        if !a.0.is_empty() && a.0 != "–" {
            seen.insert(a);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        both(&seen),
        "the page's answer follows the source: {seen:?}"
    );
    wait_for(
        &client,
        "return document.getElementById('steady').dataset.steady === 'true';",
        "a steady answer",
        Duration::from_secs(10),
    )
    .await;
    let live = screenshot(&client, "kiosk-live.png").await;
    eprintln!("answers seen: {seen:?}");

    // The source fails (its images vanish): the page says so, and the server keeps serving.
    for e in std::fs::read_dir(faces.path()).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    wait_for(
        &client,
        "return document.body.dataset.state === 'camera-lost'
             && !document.getElementById('camera-lost').hidden;",
        "the camera-lost state",
        Duration::from_secs(15),
    )
    .await;
    let lost = screenshot(&client, "kiosk-camera-lost.png").await;
    let (code, body) = kiosk.get("/healthz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("camera_lost"), "{body}");

    // And it comes back by itself when the source does.
    copy_faces(faces.path(), &[SHARED_FACES[0]]);
    wait_for(
        &client,
        "return document.body.dataset.state === 'live';",
        "the camera coming back",
        Duration::from_secs(20),
    )
    .await;
    client.close().await.ok();
    drop(driver);
    assert!(live.exists() && lost.exists());
}

fn hyper_util_connector() -> hyper_util::client::legacy::connect::HttpConnector {
    hyper_util::client::legacy::connect::HttpConnector::new()
}
