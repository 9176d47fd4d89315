//! One client connection: reads size-prefixed frames, runs up to
//! `INFLIGHT_MAX` requests at once, and writes their responses strictly in
//! request order (Kafka clients pipeline and match by order). Frame errors close
//! this connection only, after one log line.

use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;

use bytes::{Buf, Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};
use futures::Future;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

use crate::api;
use crate::context::Ctx;
use crate::response::{Chunk, Response};

/// Requests of one connection being worked on at once; reading stops beyond it.
const INFLIGHT_MAX: usize = 32;
/// Smallest valid frame: api key, version, correlation id, client id length.
pub(crate) const FRAME_MIN_BYTES: usize = 10;

type Pending = Pin<Box<dyn Future<Output = Result<Option<Response>, api::ConnError>>>>;

pub async fn serve(stream: TcpStream, ctx: Rc<Ctx>) {
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let _ = stream.set_nodelay(true);
    if let Err(e) = serve_inner(stream, &ctx, Rc::from(peer.as_str())).await {
        // One line per failed connection; the client's problem stays its own.
        tracing::warn!(%peer, "closing connection: {e}");
    }
}

async fn serve_inner(mut stream: TcpStream, ctx: &Rc<Ctx>, peer: Rc<str>) -> Result<(), api::ConnError> {
    let max = ctx.config.socket_request_max_bytes;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut inflight: FuturesOrdered<Pending> = FuturesOrdered::new();
    let mut eof = false;
    loop {
        if eof && inflight.is_empty() {
            return Ok(());
        }
        tokio::select! {
            biased;
            done = inflight.next(), if !inflight.is_empty() => {
                if let Some(resp) = done.expect("non-empty")? {
                    write_response(&mut stream, resp).await?;
                }
            }
            frame = read_frame(&mut stream, &mut buf, max), if !eof && inflight.len() < INFLIGHT_MAX => {
                match frame? {
                    Some(frame) => inflight.push_back(Box::pin(api::handle(ctx.clone(), peer.clone(), frame))),
                    None => eof = true,
                }
            }
        }
    }
}

/// Reads one frame (without its size prefix). Cancel-safe: partial data stays
/// in `buf`. `None` at a clean end of stream.
async fn read_frame(stream: &mut TcpStream, buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, api::ConnError> {
    loop {
        if buf.len() >= 4 {
            let size = i32::from_be_bytes(buf[..4].try_into().unwrap());
            if size < FRAME_MIN_BYTES as i32 {
                return Err(api::ConnError::Frame(format!("frame size {size} is invalid")));
            }
            if size as usize > max {
                return Err(api::ConnError::Frame(format!(
                    "frame of {size} bytes exceeds socket.request.max.bytes {max}"
                )));
            }
            let total = 4 + size as usize;
            if buf.len() >= total {
                buf.advance(4);
                return Ok(Some(buf.split_to(size as usize).freeze()));
            }
            buf.reserve(total - buf.len());
        } else {
            buf.reserve(4096);
        }
        let n = stream.read_buf(buf).await.map_err(api::ConnError::Io)?;
        if n == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            return Err(api::ConnError::Frame(format!("connection closed inside a frame ({} bytes)", buf.len())));
        }
    }
}

async fn write_response(stream: &mut TcpStream, resp: Response) -> Result<(), api::ConnError> {
    let len = resp.byte_len();
    stream.write_all(&(len as u32).to_be_bytes()).await.map_err(api::ConnError::Io)?;
    for chunk in resp.chunks {
        match chunk {
            Chunk::Bytes(b) => stream.write_all(&b).await.map_err(api::ConnError::Io)?,
            Chunk::File(f) => send_file(stream, &f).await.map_err(api::ConnError::Io)?,
        }
    }
    Ok(())
}

/// Page cache → socket with sendfile(2): record data never enters user space.
async fn send_file(stream: &mut TcpStream, f: &laminar_engine::FileSlice) -> std::io::Result<()> {
    stream.flush().await?;
    let mut offset = f.position as libc::off_t;
    let end = (f.position + f.len) as libc::off_t;
    let sock = stream.as_raw_fd();
    let file = f.file.as_raw_fd();
    while offset < end {
        stream.writable().await?;
        let want = (end - offset) as usize;
        let r = stream.try_io(Interest::WRITABLE, || {
            // SAFETY: both fds are open for the duration (stream borrowed, file Arc held).
            let n = unsafe { libc::sendfile(sock, file, &mut offset, want) };
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match r {
            Ok(0) => {
                // The file shrank under us (truncated by recovery is impossible
                // while open; deletion keeps data): treat as a broken response.
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file ended during sendfile"));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
