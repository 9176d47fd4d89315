//! One TCP connection to a Kafka-protocol broker: size-prefixed frames, request headers,
//! correlation ids and pipelining.
//!
//! Kafka answers the requests of one connection in the order it received them, so a request's
//! waiter is queued (under the same lock that orders the socket writes) and a reader task hands
//! each response frame to the oldest waiter, checking the correlation id. Any framing fault
//! closes the connection and fails every waiter with the same error.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// Byte offset of the correlation id in a request frame: size (4), api key (2), version (2).
const CORRELATION_ID_AT: usize = 8;
/// How much the reader asks the socket for at least, per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Sent in every request header; brokers log it and use it for quotas.
    pub client_id: String,
    /// Upper bound on one frame, either direction. Kafka's own default socket bound is 100 MiB.
    pub max_frame_bytes: usize,
    /// Requests awaiting a response on this connection; `submit` waits for a slot beyond this.
    pub max_in_flight: usize,
    /// How long a response may take before its waiter gives up (added to any server-side wait,
    /// such as a fetch's max_wait_ms).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            client_id: "laminar-client".to_string(),
            max_frame_bytes: 128 * 1024 * 1024,
            max_in_flight: 64,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

pub struct Connection {
    config: ConnectionConfig,
    peer: SocketAddr,
    writer: tokio::sync::Mutex<Writer>,
    shared: Arc<Shared>,
    in_flight: Arc<Semaphore>,
    reader: JoinHandle<()>,
}

struct Writer {
    stream: OwnedWriteHalf,
    next_correlation_id: i32,
}

struct Shared {
    /// Bounded by `max_in_flight` through the semaphore permits the entries hold.
    waiting: Mutex<Waiting>,
    max_frame_bytes: usize,
}

struct Waiting {
    queue: VecDeque<Waiter>,
    /// Set once the connection is unusable; new requests fail with it.
    closed: Option<String>,
}

struct Waiter {
    correlation_id: i32,
    response_header_version: i16,
    reply: oneshot::Sender<Result<Bytes>>,
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    /// Connects to `addr` ("host:port").
    pub async fn connect(addr: &str, config: ConnectionConfig) -> Result<Self> {
        if config.max_in_flight == 0 {
            return Err(Error::Config("max_in_flight must be at least 1".into()));
        }
        let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Timeout(config.connect_timeout.as_millis() as u64))??;
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr()?;
        let (read_half, write_half) = stream.into_split();
        let shared = Arc::new(Shared {
            waiting: Mutex::new(Waiting { queue: VecDeque::new(), closed: None }),
            max_frame_bytes: config.max_frame_bytes,
        });
        let reader = tokio::spawn(read_loop(read_half, Arc::clone(&shared)));
        Ok(Self {
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            config,
            peer,
            writer: tokio::sync::Mutex::new(Writer { stream: write_half, next_correlation_id: 0 }),
            shared,
            reader,
        })
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn config(&self) -> &ConnectionConfig {
        &self.config
    }

    /// Whether the connection has failed or been closed by the peer.
    pub fn is_closed(&self) -> bool {
        self.shared.waiting.lock().expect("waiting lock").closed.is_some()
    }

    /// Sends `request` at `version` and waits for its response.
    pub async fn call<R: Request>(&self, request: &R, version: i16) -> Result<R::Response> {
        self.submit(request, version).await?.recv().await
    }

    /// Sends `request` at `version` without waiting for the response, so that more requests
    /// can follow on the same connection; await the returned handle for the response.
    pub async fn submit<R: Request>(&self, request: &R, version: i16) -> Result<PendingResponse<R::Response>> {
        let frame = encode_request(request, version, &self.config.client_id)?;
        let raw = self.submit_frame(frame, api_key(R::KEY)?.response_header_version(version)).await?;
        Ok(PendingResponse { raw, version, _response: PhantomData })
    }

    /// Sends a request the broker will not answer (Produce with acks=0).
    pub async fn send_oneway<R: Request>(&self, request: &R, version: i16) -> Result<()> {
        let mut frame = encode_request(request, version, &self.config.client_id)?;
        self.check_frame(&frame)?;
        let mut writer = self.writer.lock().await;
        if let Some(reason) = &self.shared.waiting.lock().expect("waiting lock").closed {
            return Err(Error::Closed(reason.clone()));
        }
        let correlation_id = writer.take_correlation_id();
        frame[CORRELATION_ID_AT..CORRELATION_ID_AT + 4].copy_from_slice(&correlation_id.to_be_bytes());
        self.write(&mut writer, &frame).await
    }

    /// Sends a hand-made request body under a normal header and returns the raw response body
    /// (after the response header). For tests that probe a broker with unusual requests.
    pub async fn submit_raw(&self, api_key: i16, version: i16, body: &[u8]) -> Result<PendingRaw> {
        let key = crate::connection::api_key(api_key)?;
        let mut frame = BytesMut::with_capacity(64 + body.len());
        frame.put_i32(0);
        put_request_header(&mut frame, key, version, &self.config.client_id)?;
        frame.put_slice(body);
        let size = (frame.len() - 4) as i32;
        frame[0..4].copy_from_slice(&size.to_be_bytes());
        self.submit_frame(frame, key.response_header_version(version)).await
    }

    async fn submit_frame(&self, mut frame: BytesMut, response_header_version: i16) -> Result<PendingRaw> {
        self.check_frame(&frame)?;
        // The slot is taken before the writer lock so that a full pipeline does not hold the lock.
        let slot = Arc::clone(&self.in_flight)
            .acquire_owned()
            .await
            .map_err(|_| Error::Closed("connection dropped".into()))?;
        let (reply, rx) = oneshot::channel();
        let mut writer = self.writer.lock().await;
        let correlation_id = writer.take_correlation_id();
        frame[CORRELATION_ID_AT..CORRELATION_ID_AT + 4].copy_from_slice(&correlation_id.to_be_bytes());
        {
            let mut waiting = self.shared.waiting.lock().expect("waiting lock");
            if let Some(reason) = &waiting.closed {
                return Err(Error::Closed(reason.clone()));
            }
            waiting.queue.push_back(Waiter { correlation_id, response_header_version, reply, _slot: slot });
        }
        self.write(&mut writer, &frame).await?;
        drop(writer);
        Ok(PendingRaw { rx, timeout: self.config.request_timeout })
    }

    fn check_frame(&self, frame: &[u8]) -> Result<()> {
        if frame.len() - 4 > self.config.max_frame_bytes {
            return Err(Error::FrameTooLarge {
                size: (frame.len() - 4) as i64,
                max_bytes: self.config.max_frame_bytes,
            });
        }
        Ok(())
    }

    async fn write(&self, writer: &mut Writer, frame: &[u8]) -> Result<()> {
        if let Err(e) = writer.stream.write_all(frame).await {
            // A partial write leaves the stream unusable: fail everyone, including this request.
            let reason = format!("write to {} failed: {e}", self.peer);
            self.shared.close(&reason);
            return Err(Error::Closed(reason));
        }
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
        self.shared.close("connection dropped");
    }
}

impl Writer {
    fn take_correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        // Wraps to 0 rather than negative; ids only need to be distinct among in-flight requests.
        self.next_correlation_id = self.next_correlation_id.checked_add(1).unwrap_or(0);
        id
    }
}

impl Shared {
    fn close(&self, reason: &str) {
        let mut waiting = self.waiting.lock().expect("waiting lock");
        if waiting.closed.is_none() {
            waiting.closed = Some(reason.to_string());
        }
        let reason = waiting.closed.clone().unwrap_or_default();
        for waiter in waiting.queue.drain(..) {
            let _ = waiter.reply.send(Err(Error::Closed(reason.clone())));
        }
    }
}

/// A response not yet received, as raw body bytes.
pub struct PendingRaw {
    rx: oneshot::Receiver<Result<Bytes>>,
    timeout: Duration,
}

impl PendingRaw {
    /// Waits for the body, allowing `extra` beyond the request timeout (e.g. a fetch's max wait).
    pub async fn recv_with_extra(self, extra: Duration) -> Result<Bytes> {
        let limit = self.timeout + extra;
        match tokio::time::timeout(limit, self.rx).await {
            Err(_) => Err(Error::Timeout(limit.as_millis() as u64)),
            Ok(Err(_)) => Err(Error::Closed("connection dropped".into())),
            Ok(Ok(result)) => result,
        }
    }

    pub async fn recv(self) -> Result<Bytes> {
        self.recv_with_extra(Duration::ZERO).await
    }

    /// The body if it has arrived, without waiting; `Ok(None)` while it has not.
    pub fn try_recv(&mut self) -> Result<Option<Bytes>> {
        match self.rx.try_recv() {
            Ok(result) => result.map(Some),
            Err(oneshot::error::TryRecvError::Empty) => Ok(None),
            Err(oneshot::error::TryRecvError::Closed) => Err(Error::Closed("connection dropped".into())),
        }
    }
}

/// A typed response not yet received.
pub struct PendingResponse<T> {
    raw: PendingRaw,
    version: i16,
    _response: PhantomData<fn() -> T>,
}

impl<T: Decodable> PendingResponse<T> {
    pub async fn recv(self) -> Result<T> {
        self.recv_with_extra(Duration::ZERO).await
    }

    pub async fn recv_with_extra(self, extra: Duration) -> Result<T> {
        let body = self.raw.recv_with_extra(extra).await?;
        decode_body(body, self.version)
    }

    /// The undecoded body, for callers that must look before choosing how to decode.
    pub async fn raw_body(self) -> Result<Bytes> {
        self.raw.recv().await
    }

    /// The response if it has arrived, without waiting.
    pub fn try_recv(&mut self) -> Result<Option<T>> {
        match self.raw.try_recv()? {
            None => Ok(None),
            Some(body) => decode_body(body, self.version).map(Some),
        }
    }
}

pub(crate) fn decode_body<T: Decodable>(mut body: Bytes, version: i16) -> Result<T> {
    let response = T::decode(&mut body, version).map_err(|e| Error::Malformed(format!("{e:#}")))?;
    // Trailing bytes are tolerated: a newer broker may append fields an older decoder skips.
    Ok(response)
}

pub(crate) fn api_key(key: i16) -> Result<ApiKey> {
    ApiKey::try_from(key).map_err(|_| Error::Encode(format!("unknown api key {key}")))
}

fn put_request_header(frame: &mut BytesMut, key: ApiKey, version: i16, client_id: &str) -> Result<()> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(0) // patched in when the request is sent
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())));
    header.encode(frame, key.request_header_version(version)).map_err(|e| Error::Encode(format!("{e:#}")))
}

/// Frame = size prefix + request header (v1 or v2 by API and version) + body.
fn encode_request<R: Request>(request: &R, version: i16, client_id: &str) -> Result<BytesMut> {
    let key = api_key(R::KEY)?;
    let body_size = request.compute_size(version).map_err(|e| Error::Encode(format!("{e:#}")))?;
    let mut frame = BytesMut::with_capacity(4 + 16 + client_id.len() + body_size);
    frame.put_i32(0);
    put_request_header(&mut frame, key, version, client_id)?;
    request.encode(&mut frame, version).map_err(|e| Error::Encode(format!("{key:?} v{version}: {e:#}")))?;
    let size = (frame.len() - 4) as i32;
    frame[0..4].copy_from_slice(&size.to_be_bytes());
    Ok(frame)
}

async fn read_loop(mut stream: OwnedReadHalf, shared: Arc<Shared>) {
    let reason = match read_frames(&mut stream, &shared).await {
        Ok(()) => "closed by peer".to_string(),
        Err(e) => e.to_string(),
    };
    shared.close(&reason);
}

async fn read_frames(stream: &mut OwnedReadHalf, shared: &Shared) -> Result<()> {
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    loop {
        while buf.len() >= 4 {
            let size = i32::from_be_bytes(buf[..4].try_into().expect("4 bytes"));
            if size < 4 || size as usize > shared.max_frame_bytes {
                // A response holds at least its correlation id.
                return Err(Error::FrameTooLarge { size: size.into(), max_bytes: shared.max_frame_bytes });
            }
            let total = 4 + size as usize;
            if buf.len() < total {
                buf.reserve(total - buf.len());
                break;
            }
            buf.advance(4);
            let frame = buf.split_to(size as usize).freeze();
            deliver(shared, frame)?;
        }
        if buf.capacity() - buf.len() < READ_CHUNK_BYTES / 4 {
            buf.reserve(READ_CHUNK_BYTES);
        }
        if stream.read_buf(&mut buf).await? == 0 {
            if buf.is_empty() {
                return Ok(());
            }
            return Err(Error::Closed(format!("peer closed mid-frame ({} bytes pending)", buf.len())));
        }
    }
}

fn deliver(shared: &Shared, mut frame: Bytes) -> Result<()> {
    let waiter = shared.waiting.lock().expect("waiting lock").queue.pop_front();
    let correlation_id = i32::from_be_bytes(frame[..4].try_into().expect("frame has 4 bytes"));
    let Some(waiter) = waiter else {
        return Err(Error::Malformed(format!("unsolicited response with correlation id {correlation_id}")));
    };
    if waiter.correlation_id != correlation_id {
        let err = Error::CorrelationMismatch { expected: waiter.correlation_id, got: correlation_id };
        let _ = waiter.reply.send(Err(Error::Closed(err.to_string())));
        return Err(err);
    }
    let result = ResponseHeader::decode(&mut frame, waiter.response_header_version)
        .map(|_| frame)
        .map_err(|e| Error::Malformed(format!("response header: {e:#}")));
    // The waiter may have timed out and gone; its response is simply dropped.
    let _ = waiter.reply.send(result);
    Ok(())
}
