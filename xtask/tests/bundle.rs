//! `xtask boards` and `xtask bundle`: the tarball's exact contents, the unit, the manifest,
//! the kiosk's browser autostart (and browser.sh run against a stand-in server and browser).

mod common;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use flate2::read::GzDecoder;
use xtask::util::sha256_hex;

#[test]
fn boards_lists_the_three_profiles() {
    let out = ok(&["boards"]);
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{out}");
    assert!(rows[0].starts_with("jetson-orin-nano") && rows[0].contains("cortex-a78ae"));
    assert!(rows[1].starts_with("rpi4") && rows[1].contains("cortex-a72"));
    assert!(rows[2].starts_with("rpi5") && rows[2].contains("cortex-a76"));
    for r in rows {
        assert!(
            r.contains("aarch64-unknown-linux-musl") && r.contains("/dev/video0"),
            "{r}"
        );
        assert!(
            r.ends_with("; kiosk desktop on 127.0.0.1:8080 (chromium-browser)"),
            "{r}"
        );
    }
}

/// (mode, contents) of every entry, keyed by path; folders end in '/'.
fn entries(path: &std::path::Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut ar = tar::Archive::new(GzDecoder::new(File::open(path).expect("bundle")));
    let mut out = BTreeMap::new();
    for e in ar.entries().expect("tar") {
        let mut e = e.expect("entry");
        let mut name = e.path().expect("path").to_string_lossy().into_owned();
        if e.header().entry_type().is_dir() && !name.ends_with('/') {
            name.push('/');
        }
        assert_eq!(e.header().uid().expect("uid"), 0);
        let mode = e.header().mode().expect("mode");
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("read");
        out.insert(name, (mode, data));
    }
    out
}

#[test]
fn bundle_holds_exactly_the_release() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = ok(&[
        "bundle",
        "--board",
        "rpi4",
        "--model",
        s(&model()),
        "--binary",
        s(&binary()),
        "--skip-arch-check",
        "--out",
        s(dir.path()),
        "--version",
        "1.2.3 rc/1",
    ]);
    // The version is sanitized for file names.
    let path = dir.path().join("hydranet-edge-rpi4-1.2.3-rc-1.tar.gz");
    assert!(out.contains(s(&path)), "{out}");
    let tar_bytes = fs::metadata(&path).expect("tarball").len();
    let bin_bytes = fs::metadata(binary()).expect("binary").len();
    assert!(
        out.contains(&format!("tarball: {tar_bytes} bytes")),
        "{out}"
    );
    assert!(
        out.contains(&format!("binary:  {bin_bytes} bytes")),
        "{out}"
    );
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .expect("out dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");

    let e = entries(&path);
    let top = "hydranet-edge-rpi4-1.2.3-rc-1";
    let names: Vec<&str> = e.keys().map(String::as_str).collect();
    let want = [
        format!("{top}/"),
        format!("{top}/bin/"),
        format!("{top}/bin/edge-runtime"),
        format!("{top}/install.sh"),
        format!("{top}/kiosk/"),
        format!("{top}/kiosk/browser.sh"),
        format!("{top}/kiosk/hydranet-kiosk.desktop"),
        format!("{top}/manifest.json"),
        format!("{top}/mender/"),
        format!("{top}/mender/hydranet-release"),
        format!("{top}/model/"),
        format!("{top}/model/face_detector.LICENSE"),
        format!("{top}/model/face_detector.onnx"),
        format!("{top}/model/model.onnx"),
        format!("{top}/systemd/"),
        format!("{top}/systemd/hydranet-edge.service"),
    ];
    assert_eq!(names, want);
    let get = |p: &str| &e[&format!("{top}/{p}")];
    assert_eq!(get("bin/edge-runtime").0, 0o755);
    assert_eq!(get("install.sh").0, 0o755);
    assert_eq!(get("model/model.onnx").0, 0o644);
    assert_eq!(get("bin/").0, 0o755);
    assert_eq!(get("kiosk/").0, 0o755);
    assert_eq!(get("kiosk/browser.sh").0, 0o755);
    assert_eq!(get("kiosk/hydranet-kiosk.desktop").0, 0o644);
    assert_eq!(get("mender/hydranet-release").0, 0o755);
    assert_eq!(
        get("mender/hydranet-release").1,
        xtask::bundle::mender::UPDATE_MODULE_SH.as_bytes()
    );
    let bin = fs::read(binary()).expect("binary");
    let model_bytes = fs::read(model()).expect("model");
    assert_eq!(get("bin/edge-runtime").1, bin);
    assert_eq!(get("model/model.onnx").1, model_bytes);

    let m: serde_json::Value = serde_json::from_slice(&get("manifest.json").1).expect("json");
    assert_eq!(m["board"], "rpi4");
    assert_eq!(m["version"], "1.2.3-rc-1");
    assert_eq!(m["target"], "aarch64-unknown-linux-musl");
    assert_eq!(m["libc"], "musl");
    assert_eq!(m["target_cpu"], "cortex-a72");
    assert_eq!(m["created"], "2023-11-14T22:13:20Z");
    assert_eq!(m["install"]["prefix"], "/opt/hydranet");
    assert_eq!(m["binary"]["sha256"], sha256_hex(&bin));
    assert_eq!(m["binary"]["bytes"], bin.len());
    assert_eq!(m["model"]["sha256"], sha256_hex(&model_bytes));
    assert_eq!(
        m["kiosk"],
        serde_json::json!({
            "listen": "127.0.0.1:8080",
            "display": "desktop",
            "browser": "chromium-browser",
            "token_env": false
        })
    );

    let unit = String::from_utf8(get("systemd/hydranet-edge.service").1.clone()).expect("utf-8");
    assert!(unit.contains(
        "\nExecStart=/opt/hydranet/current/bin/edge-runtime kiosk \
         --model /opt/hydranet/current/model/model.onnx --source v4l:/dev/video0 \
         --camera-format yuyv --width 640 --height 480 --fps 30 --detector \
         /opt/hydranet/current/model/face_detector.onnx --listen 127.0.0.1:8080\n"
    ));
    let desktop = String::from_utf8(get("kiosk/hydranet-kiosk.desktop").1.clone()).expect("utf-8");
    assert!(
        desktop.contains("\n[Desktop Entry]\nType=Application\n"),
        "{desktop}"
    );
    assert!(desktop.contains("\nExec=/opt/hydranet/current/kiosk/browser.sh\n"));
    let browser = String::from_utf8(get("kiosk/browser.sh").1.clone()).expect("utf-8");
    assert!(browser.contains("\nHEALTH_URL='http://127.0.0.1:8080/healthz'\n"));
    assert!(browser.contains("release 1.2.3-rc-1"));
    let sh = String::from_utf8(get("install.sh").1.clone()).expect("utf-8");
    assert!(sh.contains("VERSION='1.2.3-rc-1'") && sh.contains("PREFIX='/opt/hydranet'"));
}

#[test]
fn bundles_are_reproducible() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let pa = bundle(a.path(), "rpi5", "7");
    let pb = bundle(b.path(), "rpi5", "7");
    assert_eq!(fs::read(pa).expect("a"), fs::read(pb).expect("b"));
}

#[test]
fn jetson_unit_asks_for_auto_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = bundle(dir.path(), "jetson-orin-nano", "1");
    let e = entries(&path);
    let unit = &e["hydranet-edge-jetson-orin-nano-1/systemd/hydranet-edge.service"].1;
    let unit = String::from_utf8_lossy(unit);
    assert!(unit.contains("--camera-format auto "), "{unit}");
    let m = &e["hydranet-edge-jetson-orin-nano-1/manifest.json"].1;
    let m: serde_json::Value = serde_json::from_slice(m).expect("json");
    assert_eq!(m["target_cpu"], "cortex-a78ae");
}

#[test]
fn gnu_libc_is_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    ok(&[
        "bundle",
        "--board",
        "rpi4",
        "--libc",
        "gnu",
        "--model",
        s(&model()),
        "--binary",
        s(&binary()),
        "--skip-arch-check",
        "--out",
        s(dir.path()),
        "--version",
        "g",
    ]);
    let e = entries(&dir.path().join("hydranet-edge-rpi4-g.tar.gz"));
    let m: serde_json::Value =
        serde_json::from_slice(&e["hydranet-edge-rpi4-g/manifest.json"].1).expect("json");
    assert_eq!(m["target"], "aarch64-unknown-linux-gnu");
    assert_eq!(m["libc"], "gnu");
}

#[test]
fn bad_inputs_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.onnx");
    fs::write(&empty, b"").expect("write");
    let text = dir.path().join("notes.onnx");
    fs::write(&text, b"hello, not a model\n").expect("write");
    let missing = dir.path().join("missing.onnx");
    let out = dir.path().join("out");
    let run = |model: &std::path::Path, binary: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "bundle",
            "--board",
            "rpi4",
            "--model",
            s(model),
            "--binary",
            s(binary),
            "--out",
            s(&out),
            "--version",
            "1",
        ];
        args.extend_from_slice(extra);
        fails(&args)
    };
    let skip = ["--skip-arch-check"];
    let err = run(&empty, &binary(), &skip);
    assert!(err.contains(s(&empty)) && err.contains("is empty"), "{err}");
    let err = run(&text, &binary(), &skip);
    assert!(
        err.contains(s(&text)) && err.contains("not an ONNX file"),
        "{err}"
    );
    let err = run(&missing, &binary(), &skip);
    assert!(err.contains(s(&missing)), "{err}");
    // A host binary is not what the board runs.
    let err = run(&model(), &binary(), &[]);
    assert!(
        err.contains("/bin/true") && err.contains("not aarch64"),
        "{err}"
    );
    let err = run(&model(), &dir.path().join("nope"), &skip);
    assert!(err.contains("nope"), "{err}");
    let err = fails(&[
        "bundle",
        "--board",
        "rpi9",
        "--model",
        s(&model()),
        "--binary",
        "/bin/true",
    ]);
    assert!(err.contains("rpi9") && err.contains("rpi4, rpi5"), "{err}");
    // Nothing half-written is left behind.
    assert!(!out.exists() || fs::read_dir(&out).expect("out").next().is_none());
}

/// The paths of a bundle's entries below its top folder.
fn names(path: &Path) -> Vec<String> {
    entries(path)
        .into_keys()
        .map(|k| {
            k.split_once('/')
                .map(|(_, r)| r.to_owned())
                .unwrap_or_default()
        })
        .filter(|k| !k.is_empty())
        .collect()
}

#[test]
fn kiosk_off_leaves_the_release_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let boards = boards_with(&dir.path().join("boards"), "rpi4", kiosk_off);
    let path = bundle_from(&boards, dir.path(), "rpi4", "1");
    assert_eq!(
        names(&path),
        [
            "bin/",
            "bin/edge-runtime",
            "install.sh",
            "manifest.json",
            "mender/",
            "mender/hydranet-release",
            "model/",
            "model/face_detector.LICENSE",
            "model/face_detector.onnx",
            "model/model.onnx",
            "systemd/",
            "systemd/hydranet-edge.service",
        ]
    );
    let e = entries(&path);
    let m: serde_json::Value =
        serde_json::from_slice(&e["hydranet-edge-rpi4-1/manifest.json"].1).expect("json");
    // Not `"kiosk": null`: the manifest is the one bundles had before the kiosk.
    assert!(m.get("kiosk").is_none(), "{m}");
    let unit = String::from_utf8_lossy(&e["hydranet-edge-rpi4-1/systemd/hydranet-edge.service"].1)
        .into_owned();
    assert!(unit.contains(
        "\nExecStart=/opt/hydranet/current/bin/edge-runtime run --model \
         /opt/hydranet/current/model/model.onnx --source v4l:/dev/video0 --camera-format yuyv \
         --width 640 --height 480 --fps 30 --detector \
         /opt/hydranet/current/model/face_detector.onnx\n"
    ));
    assert!(!unit.contains("kiosk"), "{unit}");
}

#[test]
fn cage_kiosk_ships_the_browser_unit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let boards = boards_with(&dir.path().join("boards"), "rpi4", cage);
    let path = bundle_from(&boards, dir.path(), "rpi4", "1");
    assert_eq!(
        names(&path),
        [
            "bin/",
            "bin/edge-runtime",
            "install.sh",
            "kiosk/",
            "kiosk/browser.sh",
            "kiosk/hydranet-kiosk-browser.service",
            "manifest.json",
            "mender/",
            "mender/hydranet-release",
            "model/",
            "model/face_detector.LICENSE",
            "model/face_detector.onnx",
            "model/model.onnx",
            "systemd/",
            "systemd/hydranet-edge.service",
        ]
    );
    let e = entries(&path);
    let (mode, unit) = &e["hydranet-edge-rpi4-1/kiosk/hydranet-kiosk-browser.service"];
    assert_eq!(*mode, 0o644);
    let unit = String::from_utf8_lossy(unit);
    for want in [
        "User=pi",
        "PAMName=login",
        "TTYPath=/dev/tty1",
        "ExecStart=/usr/bin/cage -- /opt/hydranet/current/kiosk/browser.sh",
        "WantedBy=multi-user.target",
    ] {
        assert!(
            unit.lines().any(|l| l == want),
            "missing `{want}` in\n{unit}"
        );
    }
    let m: serde_json::Value =
        serde_json::from_slice(&e["hydranet-edge-rpi4-1/manifest.json"].1).expect("json");
    assert_eq!(m["kiosk"]["display"], "cage");
    assert_eq!(m["kiosk"]["user"], "pi");
}

/// A kiosk reachable from the network without a token is refused, naming the profile and
/// the field to set; nothing is written.
#[test]
fn open_kiosk_beyond_loopback_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let boards = boards_with(&dir.path().join("boards"), "rpi5", |t| {
        t.replace("\"127.0.0.1:8080\"", "\"0.0.0.0:8080\"")
    });
    let out = dir.path().join("out");
    let err = fails(&[
        "--boards-dir",
        s(&boards),
        "bundle",
        "--board",
        "rpi5",
        "--model",
        s(&model()),
        "--binary",
        s(&binary()),
        "--skip-arch-check",
        "--out",
        s(&out),
    ]);
    let profile = boards.join("rpi5.toml");
    assert!(
        err.contains(s(&profile))
            && err.contains("kiosk listen `0.0.0.0:8080` reaches beyond loopback")
            && err.contains("token_env = true")
            && err.contains("/etc/hydranet/kiosk.env"),
        "{err}"
    );
    assert!(!out.exists());

    // With token_env it goes through; the token stays off every command line.
    let boards = boards_with(&dir.path().join("boards2"), "rpi5", |t| {
        t.replace(
            "listen = \"127.0.0.1:8080\"",
            "listen = \"0.0.0.0:8080\"\ntoken_env = true",
        )
    });
    let path = bundle_from(&boards, &out, "rpi5", "1");
    let e = entries(&path);
    let unit = String::from_utf8_lossy(&e["hydranet-edge-rpi5-1/systemd/hydranet-edge.service"].1)
        .into_owned();
    assert!(
        unit.contains("\nEnvironmentFile=-/etc/hydranet/kiosk.env\n"),
        "{unit}"
    );
    assert!(unit.contains(" --listen 0.0.0.0:8080\n"), "{unit}");
    let sh = String::from_utf8_lossy(&e["hydranet-edge-rpi5-1/kiosk/browser.sh"].1).into_owned();
    assert!(sh.contains("\nPAGE_URL='http://127.0.0.1:8080/'\n"), "{sh}");
    assert!(sh.contains("\nTOKEN_ENV=1\n"), "{sh}");
}

/// A stand-in kiosk server on 127.0.0.1: answers every request with `status` once
/// `delay` has passed (connections before are refused), and records the request lines.
struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(status: &'static str, delay: Duration) -> Server {
        // Take a free port, and give it back until the server is due.
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            let listener = TcpListener::bind(("127.0.0.1", port)).expect("rebind");
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut buf = [0u8; 2048];
                let n = conn.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                seen.lock()
                    .expect("lock")
                    .push(head.lines().next().unwrap_or("").to_owned());
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Server { port, requests }
    }
}

/// A folder for PATH with the tools browser.sh needs, `fetchers` (curl, wget: linked from
/// this machine when present) and a stand-in browser named `browser` that writes its
/// arguments, one a line, to `<dir>/args`. `None` when a fetcher is missing here.
fn tools(dir: &Path, fetchers: &[&str], browser: &str) -> Option<PathBuf> {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).expect("mkdir");
    let find = |tool: &str| {
        ["/usr/bin", "/bin", "/usr/local/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.is_file())
    };
    for tool in ["sed", "tail", "tr", "sleep"].iter().chain(fetchers) {
        match find(tool) {
            Some(p) => std::os::unix::fs::symlink(p, bin.join(tool)).expect("link"),
            None if fetchers.contains(tool) => {
                eprintln!("{tool} not installed here: skipped");
                return None;
            }
            None => panic!("{tool} not found"),
        }
    }
    let args = dir.join("args");
    fs::write(
        bin.join(browser),
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done >'{}'\n",
            args.display()
        ),
    )
    .expect("write");
    fs::set_permissions(bin.join(browser), fs::Permissions::from_mode(0o755)).expect("chmod");
    Some(bin)
}

/// browser.sh of an rpi4 bundle whose kiosk listens on `port` (`edit` changes the profile
/// further), unpacked under `dir`.
fn browser_sh(dir: &Path, port: u16, edit: impl Fn(String) -> String) -> PathBuf {
    let boards = boards_with(&dir.join("boards"), "rpi4", |t| {
        edit(t.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}")))
    });
    let out = dir.join("out");
    let path = bundle_from(&boards, &out, "rpi4", "1");
    untar(&path, &out).join("kiosk/browser.sh")
}

/// Runs browser.sh with PATH = `bin` only; returns (success, stderr, elapsed).
fn run_browser_sh(script: &Path, bin: &Path, env: &[(&str, &str)]) -> (bool, String, Duration) {
    let start = Instant::now();
    let out = Command::new("/bin/sh")
        .arg(script)
        .env_clear()
        .env("PATH", bin)
        .envs(env.iter().copied())
        .output()
        .expect("sh runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        start.elapsed(),
    )
}

fn browser_args(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("args"))
        .expect("the browser ran")
        .lines()
        .map(String::from)
        .collect()
}

const FLAGS: [&str; 8] = [
    "--kiosk",
    "--noerrdialogs",
    "--disable-infobars",
    "--no-first-run",
    "--disable-session-crashed-bubble",
    "--incognito",
    "--check-for-update-interval=31536000",
    "--ozone-platform-hint=auto",
];

/// The server comes up about 2 s after the script starts and answers 503 (camera lost):
/// the script waits for it, takes the 503 as an answer and opens the page. With curl, and
/// again with only wget.
#[test]
fn browser_sh_waits_for_any_answer_then_opens_the_page() {
    for fetcher in ["curl", "wget"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let Some(bin) = tools(dir.path(), &[fetcher], "chromium-browser") else {
            continue;
        };
        let server = Server::start("503 Service Unavailable", Duration::from_millis(2000));
        let script = browser_sh(dir.path(), server.port, |t| t);
        let (ok, stderr, took) = run_browser_sh(&script, &bin, &[]);
        assert!(ok, "{fetcher}: {stderr}");
        assert!(stderr.is_empty(), "{fetcher}: {stderr}");
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(20),
            "{fetcher}: {took:?}"
        );
        let mut want: Vec<String> = FLAGS.iter().map(|f| f.to_string()).collect();
        want.push(format!("http://127.0.0.1:{}/", server.port));
        assert_eq!(browser_args(dir.path()), want, "{fetcher}");
        let requests = server.requests.lock().expect("lock").clone();
        assert!(!requests.is_empty(), "{fetcher}");
        assert!(
            requests.iter().all(|r| r.starts_with("GET /healthz ")),
            "{fetcher}: {requests:?}"
        );
    }
}

/// No curl, no wget: it says so and opens the page at once. The profile's browser missing,
/// it falls back to `chromium`.
#[test]
fn browser_sh_without_fetchers_or_its_browser() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = tools(dir.path(), &[], "chromium").expect("tools");
    let script = browser_sh(dir.path(), 9, |t| t);
    let (ok, stderr, took) = run_browser_sh(&script, &bin, &[]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("neither curl nor wget"), "{stderr}");
    assert!(
        stderr.contains("chromium-browser is not installed: using chromium"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(
        browser_args(dir.path()).last().expect("url"),
        "http://127.0.0.1:9/"
    );

    // No browser at all: a clear message and a failure (cage then restarts it).
    fs::remove_file(bin.join("chromium")).expect("rm");
    let (ok, stderr, _) = run_browser_sh(&script, &bin, &[]);
    assert!(
        !ok && stderr.contains("no browser: chromium-browser"),
        "{stderr}"
    );
}

/// With token_env the page gets the token through a private file, never on the browser's
/// command line; a token it cannot pass safely is left out with a message.
#[test]
fn browser_sh_passes_the_token_through_a_private_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(bin) = tools(dir.path(), &["curl"], "chromium-browser") else {
        return;
    };
    let server = Server::start("401 Unauthorized", Duration::ZERO);
    let script = browser_sh(dir.path(), server.port, |t| {
        t.replace("enabled = true", "enabled = true\ntoken_env = true")
    });
    let runtime = dir.path().join("run-user");
    fs::create_dir(&runtime).expect("mkdir");
    fs::set_permissions(&runtime, fs::Permissions::from_mode(0o700)).expect("chmod");
    let env = [
        ("XDG_RUNTIME_DIR", s(&runtime)),
        ("HYDRANET_KIOSK_TOKEN", "s3cr3t-T0ken"),
    ];
    let (ok, stderr, _) = run_browser_sh(&script, &bin, &env);
    assert!(ok && stderr.is_empty(), "{stderr}");
    let args = browser_args(dir.path());
    let page = runtime.join("hydranet-kiosk.html");
    assert_eq!(
        args.last().expect("url"),
        &format!("file://{}", page.display())
    );
    assert!(args.iter().all(|a| !a.contains("s3cr3t")), "{args:?}");
    let html = fs::read_to_string(&page).expect("page");
    assert!(
        html.contains(&format!(
            "url=http://127.0.0.1:{}/?token=s3cr3t-T0ken\"",
            server.port
        )),
        "{html}"
    );
    assert_eq!(
        fs::metadata(&page).expect("page").permissions().mode() & 0o777,
        0o600
    );

    // Without the variable, from the token file (systemd's format; quotes allowed). The
    // script is pointed at a stand-in for /etc/hydranet/kiosk.env.
    let env_file = dir.path().join("kiosk.env");
    fs::write(
        &env_file,
        "# the kiosk's token\nHYDRANET_KIOSK_TOKEN=\"abc123\"\n",
    )
    .expect("write");
    let text = fs::read_to_string(&script).expect("script");
    let from_file = dir.path().join("browser-file.sh");
    let text = text.replace(
        "TOKEN_FILE='/etc/hydranet/kiosk.env'",
        &format!("TOKEN_FILE='{}'", env_file.display()),
    );
    fs::write(&from_file, text).expect("write");
    let (ok, stderr, _) = run_browser_sh(&from_file, &bin, &[("XDG_RUNTIME_DIR", s(&runtime))]);
    assert!(ok && stderr.is_empty(), "{stderr}");
    let html = fs::read_to_string(&page).expect("page");
    assert!(html.contains("/?token=abc123\""), "{html}");

    // A token that would need escaping in a URL is not passed; the page opens without it.
    let env = [
        ("XDG_RUNTIME_DIR", s(&runtime)),
        ("HYDRANET_KIOSK_TOKEN", "a&b"),
    ];
    let (ok, stderr, _) = run_browser_sh(&script, &bin, &env);
    assert!(ok && stderr.contains("not passed to the page"), "{stderr}");
    assert_eq!(
        browser_args(dir.path()).last().expect("url"),
        &format!("http://127.0.0.1:{}/", server.port)
    );
}
