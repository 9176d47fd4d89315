//! One client connection: reads size-prefixed frames, runs up to
//! `INFLIGHT_MAX` requests at once, and writes their responses strictly in
//! request order (Kafka clients pipeline and match by order). Frame errors close
//! this connection only, after one log line (rate-limited per cause,
//! `log_limit.rs`).
//!
//! What a connection can make the broker hold is bounded. A frame's size is
//! reserved against the connection's, its shard's and the broker's budgets
//! (`budget.rs`) before its body is read, and held until its response is
//! written; a connection that cannot reserve its next frame stops reading,
//! and TCP pushes back on the client. Beyond its frames a connection buffers
//! at most `READ_AHEAD_BYTES`. In time: a connection idle for
//! `connections.max.idle.ms` is closed, and so is one whose frame does not
//! arrive whole, or whose response is not taken whole, within
//! `--frame-timeout-ms`. How many connections there may be: `conn_caps.rs`.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};
use futures::Future;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::api::{self, ConnError, HandlerResult};
use crate::budget::{Held, RequestBudgets};
use crate::conn_caps::Admitted;
use crate::context::{ClientLimits, Ctx};
use crate::log_limit::{self, Cause};
use crate::metrics;
use crate::response::{Chunk, Response};
use crate::security::stream::Stream;
use crate::security::{tls, Listener, Session};

/// Requests of one connection being worked on at once; reading stops beyond it.
const INFLIGHT_MAX: usize = 32;
/// Smallest valid frame: api key, version, correlation id, client id length.
pub(crate) const FRAME_MIN_BYTES: usize = 10;
/// Bytes read past the frame being received (the start of the next ones):
/// the one buffer of a connection no budget counts. 16 KiB takes in a dozen
/// small pipelined requests per read; all connections at the default cap
/// (10,000) hold at most 160 MiB of it. Frames smaller than this are copied
/// out of the read buffer, so a small request kept long (a long-polling
/// Fetch) does not pin a whole buffer.
const READ_AHEAD_BYTES: usize = 16 * 1024;

type Pending = Pin<Box<dyn Future<Output = (HandlerResult, Held)>>>;

/// Admits a connection the shard's listener accepted and serves it, or
/// closes it at once when a connection cap refuses it (`conn_caps.rs`).
pub fn accept(stream: TcpStream, peer: SocketAddr, listener: &Arc<Listener>, ctx: &Rc<Ctx>) {
    match ctx.conn_caps.admit(peer.ip()) {
        Ok(admitted) => {
            let session = Rc::new(Session::new(peer, listener.clone()));
            tokio_uring::spawn(serve(stream, ctx.clone(), session, admitted));
        }
        Err(why) => {
            drop(stream);
            ctx.conn_caps.log_refusal(why, peer);
        }
    }
}

async fn serve(stream: TcpStream, ctx: Rc<Ctx>, session: Rc<Session>, _admitted: Admitted) {
    let peer = session.peer_text.clone();
    let _ = stream.set_nodelay(true);
    let result = match tls_handshake(stream, &ctx, &session).await {
        Ok(stream) => serve_inner(stream, &ctx, session).await,
        Err(why) => Err(why),
    };
    if let Err(why) = result {
        // One line per closed connection, and few per cause under a flood:
        // the client's problem stays its own.
        match why.cause() {
            None => tracing::debug!(%peer, "closing connection: {why}"),
            Some(cause) => {
                if log_limit::admit(cause) {
                    tracing::warn!(%peer, "closing connection: {why}");
                }
            }
        }
    }
}

/// TLS listeners: the handshake, within the frame timeout; a client
/// certificate names the session's principal (SSL listeners).
async fn tls_handshake(stream: TcpStream, ctx: &Ctx, session: &Session) -> Result<Stream, Close> {
    let Some(acceptor) = &session.listener.tls else {
        return Ok(Stream::Plain(stream));
    };
    let timeout = ctx.config.limits.frame_timeout;
    let tls = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return Err(Close::Auth(format!("TLS handshake failed: {e}"))),
        Err(_) => return Err(Close::Auth(format!("TLS handshake not done within {} ms", timeout.as_millis()))),
    };
    let subject = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| tls::subject_name(c));
    match subject {
        Some(Some(dn)) => session.set_certificate_principal(dn),
        Some(None) => return Err(Close::Auth("the client certificate's subject is unreadable".into())),
        None => {}
    }
    Ok(Stream::Tls(Box::new(tls)))
}

/// Why the broker closed a connection.
enum Close {
    /// From a request's handling: malformed, or the socket failed.
    Request(ConnError),
    Malformed(String),
    Oversized(String),
    FrameTimeout {
        after: Duration,
        received: usize,
        size: Option<usize>,
    },
    ResponseTimeout {
        after: Duration,
    },
    Idle {
        after: Duration,
    },
    /// Authentication failed or was skipped (`security/sasl.rs`).
    Auth(String),
}

impl Close {
    /// The rate limiter's cause; `None` for the routine (idle) close.
    fn cause(&self) -> Option<Cause> {
        Some(match self {
            Close::Request(ConnError::Frame(_)) | Close::Malformed(_) => Cause::MalformedFrame,
            Close::Request(ConnError::Io(_)) => Cause::ConnectionIo,
            Close::Oversized(_) => Cause::OversizedFrame,
            Close::FrameTimeout { .. } | Close::ResponseTimeout { .. } => Cause::Timeout,
            Close::Auth(_) => Cause::Authentication,
            Close::Idle { .. } => return None,
        })
    }
}

impl std::fmt::Display for Close {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Close::Request(e) => write!(f, "{e}"),
            Close::Malformed(why) | Close::Oversized(why) | Close::Auth(why) => f.write_str(why),
            Close::FrameTimeout { after, received, size } => {
                let of = size.map_or("a size prefix".to_string(), |s| format!("{} bytes", 4 + s));
                write!(f, "frame not received within {} ms ({received} of {of})", after.as_millis())
            }
            Close::ResponseTimeout { after } => {
                write!(f, "response not taken by the client within {} ms", after.as_millis())
            }
            Close::Idle { after } => write!(f, "idle for {} ms", after.as_millis()),
        }
    }
}

async fn serve_inner(mut stream: Stream, ctx: &Rc<Ctx>, session: Rc<Session>) -> Result<(), Close> {
    let limits = &ctx.config.limits;
    let frame_max = limits.budgets.frame_max_bytes(ctx.config.socket_request_max_bytes as u64);
    let mut reader = Reader::new();
    let mut inflight: FuturesOrdered<Pending> = FuturesOrdered::new();
    // Bytes of the frames in `inflight`, against the connection's budget.
    let mut inflight_bytes: u64 = 0;
    let mut eof = false;
    // Armed at or before the connection's deadline; when it fires early the
    // deadline is looked up again (it moves with every read).
    let mut timer = Box::pin(tokio::time::sleep(limits.connections_max_idle));
    loop {
        if eof && inflight.is_empty() {
            return Ok(());
        }
        let room = limits.budgets.connection_bytes.saturating_sub(inflight_bytes);
        // Until it authenticates, a connection's requests run one at a time
        // (each may change what the next frame is: a v0 handshake makes it a
        // bare SASL token) and its frames are small.
        let authenticated = session.authenticated();
        let frame_max = if authenticated { frame_max } else { frame_max_unauthenticated(frame_max) };
        reader.frame_min_bytes = if session.expects_raw_token() { 0 } else { FRAME_MIN_BYTES };
        let can_read =
            !eof && inflight.len() < INFLIGHT_MAX && (authenticated || inflight.is_empty()) && reader.fits(room);
        reader.note_reading(can_read);
        let deadline = reader.deadline(can_read, inflight.is_empty(), limits);
        if let Some(at) = deadline {
            if at < timer.deadline() {
                timer.as_mut().reset(at);
            }
        }
        tokio::select! {
            biased;
            done = inflight.next(), if !inflight.is_empty() => {
                let (result, held) = done.expect("non-empty");
                if let Some(resp) = result.map_err(Close::Request)? {
                    write_response(&mut stream, resp, limits.frame_timeout).await?;
                }
                if let Some(why) = session.take_close() {
                    return Err(Close::Auth(why));
                }
                inflight_bytes -= held.bytes();
                // `held` drops here: the frame's bytes go back to the shard's
                // and the broker's budgets once its response is written.
            }
            step = reader.step(&mut stream, &ctx.budgets, frame_max, room), if can_read => match step? {
                Step::Frame(frame, held) => {
                    inflight_bytes += held.bytes();
                    let (ctx, session) = (ctx.clone(), session.clone());
                    if session.expects_raw_token() {
                        inflight.push_back(Box::pin(async move {
                            (crate::security::sasl::raw_token(&ctx, &session, frame).await, held)
                        }));
                    } else {
                        let timer = metrics::RequestTimer::start(&frame);
                        inflight.push_back(Box::pin(async move {
                            let result = api::handle(ctx, session, frame).await;
                            timer.finish();
                            (result, held)
                        }));
                    }
                }
                Step::Progress | Step::Blocked => {}
                Step::Eof => eof = true,
            },
            () = &mut timer, if deadline.is_some() => {
                // The read that was under way may have moved the deadline.
                match reader.deadline(can_read, inflight.is_empty(), limits) {
                    Some(at) if at <= Instant::now() => return Err(reader.expired(can_read, limits)),
                    Some(at) => timer.as_mut().reset(at),
                    None => {}
                }
            }
        }
    }
}

/// Before authentication frames are bounded by Kafka's
/// `sasl.server.max.receive.size` too.
fn frame_max_unauthenticated((bytes, name): (u64, &str)) -> (u64, &str) {
    let sasl_max = crate::security::sasl::SASL_RECEIVE_BYTES_MAX;
    if bytes <= sasl_max {
        (bytes, name)
    } else {
        (sasl_max, "sasl.server.max.receive.size")
    }
}

/// Receives frames: size prefix, then a budget for the body, then the body.
/// Everything lives here between calls of `step`, which may be cancelled at
/// any await without losing bytes or budget.
struct Reader {
    buf: BytesMut,
    /// Smaller frames are malformed: `FRAME_MIN_BYTES`, or 0 for bare SASL tokens.
    frame_min_bytes: usize,
    state: State,
    /// When the frame being received started: its first byte, or the moment
    /// the broker (re)started reading it (time spent waiting for a budget or
    /// a free request slot is the broker's, not the client's).
    started: Option<Instant>,
    /// Reading was held off (`note_reading`): the frame's clock restarts.
    paused: bool,
    last_read: Instant,
}

enum State {
    Prefix,
    /// The size is known; its budget is not reserved yet.
    Waiting(usize),
    Body {
        size: usize,
        held: Held,
    },
}

enum Step {
    Frame(Bytes, Held),
    /// A frame started arriving, or got its budget: its timeout applies now.
    Progress,
    /// The next frame does not fit the connection's budget: reading waits
    /// for responses to be written.
    Blocked,
    Eof,
}

impl Reader {
    fn new() -> Reader {
        Reader {
            buf: BytesMut::with_capacity(READ_AHEAD_BYTES),
            frame_min_bytes: FRAME_MIN_BYTES,
            state: State::Prefix,
            started: None,
            paused: false,
            last_read: Instant::now(),
        }
    }

    /// Whether the next step can go on with `room` bytes of the connection's budget.
    fn fits(&self, room: u64) -> bool {
        match self.state {
            State::Waiting(size) => size as u64 <= room,
            _ => true,
        }
    }

    /// Part of a frame is here and the broker is reading the rest.
    fn receiving(&self) -> bool {
        match self.state {
            State::Prefix => !self.buf.is_empty(),
            State::Waiting(_) => false,
            State::Body { .. } => true,
        }
    }

    fn note_reading(&mut self, reading: bool) {
        if !reading {
            self.paused = true;
        } else if std::mem::take(&mut self.paused) && self.started.is_some() {
            self.started = Some(Instant::now());
        }
    }

    /// When the connection is closed if nothing changes: its frame's timeout
    /// while one is being received, its idle timeout while nothing is in
    /// flight, none while requests are being worked on or reading is held off.
    fn deadline(&self, reading: bool, nothing_in_flight: bool, limits: &ClientLimits) -> Option<Instant> {
        if reading && self.receiving() {
            return self.started.map(|t| t + limits.frame_timeout);
        }
        if nothing_in_flight && matches!(self.state, State::Prefix) && self.buf.is_empty() {
            return Some(self.last_read + limits.connections_max_idle);
        }
        None
    }

    fn expired(&self, reading: bool, limits: &ClientLimits) -> Close {
        if reading && self.receiving() {
            let size = match self.state {
                State::Body { size, .. } => Some(size),
                _ => None,
            };
            Close::FrameTimeout { after: limits.frame_timeout, received: self.buf.len(), size }
        } else {
            Close::Idle { after: limits.connections_max_idle }
        }
    }

    /// Reads until a whole frame is here (with its budget reserved), the
    /// stream ends, the next frame does not fit `room`, or a frame starts
    /// being received (so the caller arms its timeout).
    async fn step(
        &mut self,
        stream: &mut Stream,
        budgets: &RequestBudgets,
        (frame_max, limit_name): (u64, &str),
        room: u64,
    ) -> Result<Step, Close> {
        let receiving = self.receiving();
        loop {
            if self.receiving() && !receiving {
                return Ok(Step::Progress);
            }
            match self.state {
                State::Prefix if self.buf.len() >= 4 => {
                    let size = i32::from_be_bytes(self.buf[..4].try_into().unwrap());
                    if size < self.frame_min_bytes as i32 {
                        return Err(Close::Malformed(format!("frame size {size} is invalid")));
                    }
                    if size as u64 > frame_max {
                        return Err(Close::Oversized(format!(
                            "frame of {size} bytes exceeds {limit_name} {frame_max}"
                        )));
                    }
                    self.state = State::Waiting(size as usize);
                }
                State::Prefix => {
                    self.buf.reserve(READ_AHEAD_BYTES - self.buf.len());
                    if self.read(stream, READ_AHEAD_BYTES - self.buf.len()).await? == 0 {
                        return self.ended();
                    }
                    self.started.get_or_insert(self.last_read);
                }
                State::Waiting(size) => {
                    if size as u64 > room {
                        return Ok(Step::Blocked);
                    }
                    let held = budgets.reserve(size as u64).await;
                    self.state = State::Body { size, held };
                    self.started = Some(Instant::now());
                }
                State::Body { size, .. } if self.buf.len() >= 4 + size => return Ok(self.take_frame()),
                State::Body { size, .. } => {
                    let total = 4 + size;
                    // The frame's bytes are reserved; past it, the read-ahead.
                    self.buf.reserve(total - self.buf.len());
                    if self.read(stream, total + READ_AHEAD_BYTES - self.buf.len()).await? == 0 {
                        return self.ended();
                    }
                }
            }
        }
    }

    async fn read(&mut self, stream: &mut Stream, max: usize) -> Result<usize, Close> {
        let n = stream.take(max as u64).read_buf(&mut self.buf).await.map_err(|e| Close::Request(ConnError::Io(e)))?;
        self.last_read = Instant::now();
        Ok(n)
    }

    fn ended(&self) -> Result<Step, Close> {
        if self.buf.is_empty() && matches!(self.state, State::Prefix) {
            return Ok(Step::Eof);
        }
        Err(Close::Malformed(format!("connection closed inside a frame ({} bytes)", self.buf.len())))
    }

    /// Takes the whole frame at the front of the buffer (without its prefix).
    fn take_frame(&mut self) -> Step {
        let State::Body { size, held } = std::mem::replace(&mut self.state, State::Prefix) else {
            unreachable!("called with a whole frame in the buffer");
        };
        let frame = if size < READ_AHEAD_BYTES {
            // Copied: the buffer stays this connection's alone and is reused.
            let frame = Bytes::copy_from_slice(&self.buf[4..4 + size]);
            self.buf.advance(4 + size);
            frame
        } else {
            // Zero-copy: the frame keeps the allocation made for it; the
            // read-ahead past it moves to a buffer of its own, so nothing
            // outlives the frame's budget.
            let rest = self.buf.split_off(4 + size);
            self.buf.advance(4);
            let frame = std::mem::replace(&mut self.buf, BytesMut::with_capacity(READ_AHEAD_BYTES)).freeze();
            self.buf.extend_from_slice(&rest);
            frame
        };
        self.started = if self.buf.is_empty() { None } else { Some(Instant::now()) };
        Step::Frame(frame, held)
    }
}

/// Writes a response, giving the client `timeout` to take it once the socket
/// buffer is full (most responses fit it, and set no timer at all).
async fn write_response(stream: &mut Stream, resp: Response, timeout: Duration) -> Result<(), Close> {
    let write = write_frame(stream, resp);
    tokio::pin!(write);
    if let Poll::Ready(r) = futures::poll!(write.as_mut()) {
        return r.map_err(Close::Request);
    }
    match tokio::time::timeout(timeout, write).await {
        Ok(r) => r.map_err(Close::Request),
        Err(_) => Err(Close::ResponseTimeout { after: timeout }),
    }
}

async fn write_frame(stream: &mut Stream, resp: Response) -> Result<(), ConnError> {
    let len = resp.byte_len();
    stream.write_all(&(len as u32).to_be_bytes()).await.map_err(ConnError::Io)?;
    for chunk in resp.chunks {
        match chunk {
            Chunk::Bytes(b) => stream.write_all(&b).await.map_err(ConnError::Io)?,
            Chunk::File(f) => match stream.plain() {
                Some(socket) => send_file(socket, &f).await.map_err(ConnError::Io)?,
                // TLS must encrypt: no sendfile (security/stream.rs).
                None => stream.write_file(&f).await.map_err(ConnError::Io)?,
            },
        }
    }
    // TLS holds the last record until flushed; a socket has nothing to flush.
    stream.flush().await.map_err(ConnError::Io)
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
