//! The metrics endpoint: one thread, one connection at a time, HTTP/1.0
//! style (one request per connection). `GET /metrics` answers the
//! exposition; anything else 404 (or 405 for other methods). Prometheus
//! scrapes every 15–60 s, so serving connections in turn is enough, and
//! bounds what the endpoint can cost: one request of at most
//! `REQUEST_MAX_BYTES`, read within `IO_TIMEOUT`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use super::collect::Scraper;
use crate::cluster::Cluster;
use crate::router::Router;

/// A request's head larger than this is refused (Prometheus sends ~300 bytes).
const REQUEST_MAX_BYTES: usize = 8 * 1024;
/// A client must send its request, and take the answer, within this.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The rings' 32-bit counters are read at least this often, scraped or not.
const RING_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// Binds the metrics address: done first at start, so a taken port stops
/// the broker before it joins the cluster.
pub fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).with_context(|| format!("binding the metrics address {addr}"))
}

/// Serves metrics on `listener` from a thread of its own until the process
/// ends. Returns the bound address.
pub fn serve(listener: TcpListener, router: Router, cluster: Arc<Cluster>) -> anyhow::Result<SocketAddr> {
    let bound = listener.local_addr()?;
    let mut scraper = Scraper::new(router, cluster)?;
    std::thread::Builder::new().name("metrics".into()).spawn(move || loop {
        if !readable(&listener, RING_SAMPLE_INTERVAL) {
            scraper.sample_rings();
            continue;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = answer(stream, &mut scraper) {
                    tracing::debug!("metrics request failed: {e}");
                }
            }
            Err(e) => {
                if crate::log_limit::admit(crate::log_limit::Cause::AcceptFailed) {
                    tracing::warn!("metrics accept failed: {e}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    })?;
    tracing::info!(%bound, "serving Prometheus metrics at http://{bound}/metrics");
    Ok(bound)
}

/// Waits until a connection is waiting, or `timeout`.
fn readable(listener: &TcpListener, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) > 0 }
}

fn answer(mut stream: TcpStream, scraper: &mut Scraper) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > REQUEST_MAX_BYTES {
            return respond(&mut stream, "431 Request Header Fields Too Large", "text/plain", b"request too large\n");
        }
    }
    let line = String::from_utf8_lossy(head.split(|&b| b == b'\n').next().unwrap_or_default()).to_string();
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => {
            let body = scraper.scrape();
            respond(
                &mut stream,
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                body.as_bytes(),
            )
        }
        ("GET", "/") => respond(&mut stream, "200 OK", "text/plain", b"laminar: metrics at /metrics\n"),
        ("GET", _) => respond(&mut stream, "404 Not Found", "text/plain", b"not found: try /metrics\n"),
        _ => respond(&mut stream, "405 Method Not Allowed", "text/plain", b"only GET\n"),
    }
}

fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}
