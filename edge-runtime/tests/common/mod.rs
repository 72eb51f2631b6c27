//! A kiosk process for the HTTP and browser tests: started on a free loopback port, killed
//! when dropped.
#![allow(dead_code)]
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub struct Kiosk {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Drop for Kiosk {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Kiosk {
    /// Starts `edge-runtime kiosk` with `args` and waits until it answers.
    pub fn start(model: &Path, args: &[&str]) -> Kiosk {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let child = Command::new(env!("CARGO_BIN_EXE_edge-runtime"))
            .arg("kiosk")
            .arg("--model")
            .arg(model)
            .args(["--listen", &addr.to_string()])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the kiosk");
        let kiosk = Kiosk { child, addr };
        // Ready when it answers HTTP, not merely when the port accepts: the socket is bound
        // before the server's accept loop runs, and a loaded machine can take seconds.
        let t0 = Instant::now();
        while kiosk.get("/").0 != 200 {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "kiosk did not answer"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        kiosk
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// One raw request; returns the status code and the body (as much as arrives before
    /// the server closes or 5 s pass); code 0 when nothing came back.
    pub fn raw(&self, request: &[u8]) -> (u16, String) {
        let Ok(mut s) = TcpStream::connect(self.addr) else {
            return (0, String::new());
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        let _ = s.write_all(request);
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = s.read(&mut chunk) {
            if n == 0 || buf.len() > 1 << 20 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (code, text)
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        self.raw(
            format!("GET {path} HTTP/1.1\r\nHost: kiosk\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    }

    /// Resident memory of the kiosk process, bytes.
    pub fn rss(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }
}
