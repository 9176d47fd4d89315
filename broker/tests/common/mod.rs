//! Starts the real `laminar` binary for end-to-end tests and speaks raw Kafka
//! frames to it (so tests can also send what no well-behaved client would).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

pub struct Laminar {
    child: Option<Child>,
    pub addr: String,
    pub dir: tempfile::TempDir,
    pub log: Arc<Mutex<String>>,
    extra: Vec<String>,
    /// Environment variables for the broker (e.g. `LAMINAR_FAILPOINTS`).
    env: Vec<(String, String)>,
}

impl Laminar {
    pub fn start(extra: &[&str]) -> Laminar {
        Laminar::start_in(tempfile::tempdir().unwrap(), extra)
    }

    /// Starts on a data directory the test prepared (e.g. a small filesystem).
    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Laminar {
        Laminar::start_in_with_env(dir, extra, &[])
    }

    /// Starts with extra environment variables.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Laminar {
        Laminar::start_in_with_env(tempfile::tempdir().unwrap(), extra, env)
    }

    pub fn start_in_with_env(dir: tempfile::TempDir, extra: &[&str], env: &[(&str, &str)]) -> Laminar {
        let mut l = Laminar {
            child: None,
            addr: "127.0.0.1:0".into(),
            dir,
            log: Arc::default(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        l.spawn();
        l
    }

    /// Starts the broker again after `stop`.
    pub fn restart_stopped(&mut self) {
        self.spawn();
    }

    fn spawn(&mut self) {
        // LAMINAR_BIN runs these tests against another build (e.g. an older
        // one, to show a regression test fails there).
        let bin = std::env::var("LAMINAR_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_laminar").to_string());
        let mut child = Command::new(bin)
            .args(["--listen", &self.addr, "--data-dir"])
            .arg(self.dir.path())
            .args(["--shards", "2", "--no-pin"])
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start laminar");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let log = self.log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                log.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        assert!(line.starts_with("listening on "), "laminar did not start: {line:?} {}", self.log.lock().unwrap());
        self.addr = line.trim().trim_start_matches("listening on ").to_string();
        self.child = Some(child);
    }

    /// Sends `signal` and waits for the exit status.
    pub fn stop(&mut self, signal: i32) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(child.id() as i32, signal) };
        child.wait().unwrap()
    }

    /// Waits up to `timeout` for the broker to exit by itself; its status,
    /// or `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn restart(&mut self, signal: i32) {
        self.stop(signal);
        self.spawn();
    }

    /// The broker's resident memory (VmRSS), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits up to 10 s for `needle` in the log (lines are written by
    /// another thread of the broker than the one answering).
    pub fn log_contains(&self, needle: &str) -> bool {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < until {
            if self.log_text().contains(needle) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }
}

impl Drop for Laminar {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A whole request frame (size prefix included).
pub fn frame<R: Encodable + HeaderVersion>(api: ApiKey, version: i16, correlation_id: i32, body: &R) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("e2e")))
        .encode(&mut b, api.request_header_version(version))
        .unwrap();
    body.encode(&mut b, version).unwrap();
    let len = (b.len() - 4) as i32;
    b[..4].copy_from_slice(&len.to_be_bytes());
    b.freeze()
}

/// Reads one response frame; `None` when the broker closed the connection.
pub fn read_frame(s: &mut TcpStream) -> Option<Bytes> {
    let mut len = [0u8; 4];
    if s.read_exact(&mut len).is_err() {
        return None;
    }
    let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).ok()?;
    Some(Bytes::from(buf))
}

/// Sends a request and decodes its response.
pub fn call<Req, Resp>(s: &mut TcpStream, api: ApiKey, version: i16, req: &Req) -> Resp
where
    Req: Encodable + HeaderVersion,
    Resp: Decodable + HeaderVersion,
{
    s.write_all(&frame(api, version, 7, req)).unwrap();
    let mut body = read_frame(s).expect("broker closed the connection");
    let h = ResponseHeader::decode(&mut body, Resp::header_version(version)).unwrap();
    assert_eq!(h.correlation_id, 7);
    let r = Resp::decode(&mut body, version).unwrap();
    assert!(!body.has_remaining(), "trailing bytes in response");
    r
}

/// True when the broker closes the connection (EOF or reset) within the read timeout.
pub fn closed_by_broker(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe),
    }
}
