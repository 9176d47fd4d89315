//! SASL on SASL_PLAINTEXT and SASL_SSL listeners, as Kafka serves it:
//! SaslHandshake (v0–1) picks the mechanism, then tokens travel either in
//! SaslAuthenticate requests (after a v1 handshake) or as bare size-prefixed
//! frames (after a v0 handshake, the framing of Kafka before 1.0).
//! Mechanisms: PLAIN (checked against the SCRAM credentials of the metadata
//! store, so there is one user database) and SCRAM-SHA-256/512 (`scram.rs`).
//!
//! Until it authenticates, a connection may send only ApiVersions,
//! SaslHandshake and SaslAuthenticate (anything else closes it, as Kafka
//! does), one request at a time, frames of at most
//! `SASL_RECEIVE_BYTES_MAX`. A failure is answered with
//! SASL_AUTHENTICATION_FAILED and a message, after a delay that grows with
//! the failures of the same address (`FailureDelays`); then the connection
//! closes. Sessions do not expire: SaslAuthenticate says lifetime 0, so
//! clients do not re-authenticate (KIP-368), and a handshake on an
//! authenticated connection is refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{
    RequestHeader, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};

use super::scram::{self, ClientFirst, Credential, Exchange, Mechanism};
use super::session::Session;
use crate::api::{decode, respond, s, HandlerResult};
use crate::context::Ctx;
use crate::log_limit::{self, Cause};
use crate::response::{Chunk, Response};

pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
pub const ILLEGAL_SASL_STATE: i16 = 34;
pub const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// Kafka's `sasl.server.max.receive.size`: the largest frame a connection
/// may send before it is authenticated. SASL tokens are small (a SCRAM
/// message is under 1 KiB); this keeps an unauthenticated peer from making
/// the broker hold more.
pub const SASL_RECEIVE_BYTES_MAX: u64 = 512 * 1024;

/// Kafka's `connection.failed.authentication.delay.ms` default: the first
/// failure from an address is answered this late...
const FAILURE_DELAY_MS_BASE: u64 = 100;
/// ...each further failure within `FAILURE_WINDOW` doubles it, up to this.
const FAILURE_DELAY_MS_MAX: u64 = 5_000;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses whose failures are remembered; past it the oldest is forgotten.
const FAILURE_ADDRESSES_MAX: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    Scram(Mechanism),
}

impl SaslMechanism {
    #[cfg(test)]
    pub const ALL: [SaslMechanism; 3] =
        [SaslMechanism::Plain, SaslMechanism::Scram(Mechanism::Sha256), SaslMechanism::Scram(Mechanism::Sha512)];

    pub fn parse(name: &str) -> Option<SaslMechanism> {
        match name {
            "PLAIN" => Some(SaslMechanism::Plain),
            other => Mechanism::parse(other).map(SaslMechanism::Scram),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(m) => m.name(),
        }
    }
}

/// Where a connection is in authentication.
pub(crate) enum Auth {
    /// Authenticated (or a listener without SASL).
    Done,
    /// A SASL listener's connection before SaslHandshake.
    Handshake,
    /// After SaslHandshake: the mechanism's first token is next. `raw`: the
    /// handshake was v0, so tokens come as bare frames.
    Token { mechanism: SaslMechanism, raw: bool },
    /// SCRAM after the server's first message.
    ScramFinal { exchange: Box<Exchange>, raw: bool },
    /// Failed; the connection is closing.
    Failed,
}

impl Auth {
    pub fn raw(&self) -> bool {
        matches!(self, Auth::Token { raw: true, .. } | Auth::ScramFinal { raw: true, .. })
    }
}

/// Why authentication failed: `client` goes to the client and the log, never a secret.
struct Failure {
    code: i16,
    client: String,
    user: Option<String>,
}

impl Failure {
    fn auth(client: impl Into<String>, user: Option<String>) -> Failure {
        Failure { code: SASL_AUTHENTICATION_FAILED, client: client.into(), user }
    }
}

/// Answer delays for failed authentications, per source address.
#[derive(Default)]
pub struct FailureDelays {
    recent: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl FailureDelays {
    /// Records a failure from `ip` and returns how long to wait before answering it.
    pub fn on_failure(&self, ip: IpAddr) -> Duration {
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() >= FAILURE_ADDRESSES_MAX && !recent.contains_key(&ip) {
            recent.retain(|_, (_, at)| now.duration_since(*at) < FAILURE_WINDOW);
            if recent.len() >= FAILURE_ADDRESSES_MAX {
                let oldest = recent.iter().min_by_key(|(_, (_, at))| *at).map(|(ip, _)| *ip);
                if let Some(oldest) = oldest {
                    recent.remove(&oldest);
                }
            }
        }
        let entry = recent.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= FAILURE_WINDOW {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        let doublings = (entry.0 - 1).min(16);
        Duration::from_millis((FAILURE_DELAY_MS_BASE << doublings).min(FAILURE_DELAY_MS_MAX))
    }
}

/// SaslHandshake (17).
pub fn handshake(ctx: &Ctx, session: &Session, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: SaslHandshakeRequest = decode(header, body)?;
    let enabled = &ctx.security.sasl_mechanisms;
    let mut resp = SaslHandshakeResponse::default().with_mechanisms(enabled.iter().map(|m| s(m.name())).collect());
    if !session.listener.protocol.sasl() {
        // Kafka's answer on a listener without SASL; the connection stays.
        return respond(header, &resp.with_error_code(ILLEGAL_SASL_STATE));
    }
    let state = std::mem::replace(&mut *session.auth.borrow_mut(), Auth::Failed);
    match state {
        Auth::Handshake => {}
        Auth::Done => {
            session.close_after_response(
                "SaslHandshake on an authenticated connection: re-authentication (KIP-368) is not supported".into(),
            );
            return respond(header, &resp.with_error_code(ILLEGAL_SASL_STATE));
        }
        _ => {
            session.close_after_response("SaslHandshake out of order".into());
            return respond(header, &resp.with_error_code(ILLEGAL_SASL_STATE));
        }
    }
    match SaslMechanism::parse(req.mechanism.as_str()).filter(|m| enabled.contains(m)) {
        Some(mechanism) => {
            *session.auth.borrow_mut() = Auth::Token { mechanism, raw: header.request_api_version == 0 };
            resp.error_code = 0;
        }
        None => {
            let mechanism: String = req.mechanism.chars().take(64).collect();
            session.close_after_response(format!("SASL mechanism '{mechanism}' is not enabled"));
            resp.error_code = UNSUPPORTED_SASL_MECHANISM;
        }
    }
    respond(header, &resp)
}

/// SaslAuthenticate (36): one token of the exchange.
pub async fn authenticate(ctx: &Ctx, session: &Session, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: SaslAuthenticateRequest = decode(header, body)?;
    let resp = SaslAuthenticateResponse::default().with_session_lifetime_ms(0);
    let expected =
        matches!(*session.auth.borrow(), Auth::Token { raw: false, .. } | Auth::ScramFinal { raw: false, .. });
    if !expected {
        let why = if session.authenticated() {
            "re-authentication (KIP-368) is not supported"
        } else {
            "SaslAuthenticate before SaslHandshake"
        };
        session.close_after_response(why.into());
        return respond(header, &resp.with_error_code(ILLEGAL_SASL_STATE).with_error_message(Some(s(why))));
    }
    match step(ctx, session, &req.auth_bytes).await {
        Ok(token) => respond(header, &resp.with_error_message(None).with_auth_bytes(Bytes::from(token))),
        Err(f) => {
            let (code, client) = (f.code, f.client.clone());
            fail(ctx, session, f).await;
            respond(header, &resp.with_error_code(code).with_error_message(Some(s(client))))
        }
    }
}

/// A bare token frame after a v0 handshake; the answer is a bare frame too.
/// A failure closes the connection without an answer (v0 has no way to say why).
pub async fn raw_token(ctx: &Ctx, session: &Session, frame: Bytes) -> HandlerResult {
    match step(ctx, session, &frame).await {
        Ok(token) => Ok(Some(Response { chunks: vec![Chunk::Bytes(Bytes::from(token))] })),
        Err(f) => {
            fail(ctx, session, f).await;
            Ok(None)
        }
    }
}

async fn fail(ctx: &Ctx, session: &Session, f: Failure) {
    let delay = ctx.security.failures.on_failure(session.peer.ip());
    if log_limit::admit(Cause::Authentication) {
        let user = f.user.as_deref().unwrap_or("-");
        tracing::warn!(peer = %session.peer_text, listener = %session.listener.name, user,
            code = f.code, "SASL authentication failed: {}", f.client);
    }
    session.close_after_response(format!("authentication failed: {}", f.client));
    tokio::time::sleep(delay).await;
}

/// Feeds one client token to the exchange; returns the server's token.
async fn step(ctx: &Ctx, session: &Session, token: &[u8]) -> Result<Vec<u8>, Failure> {
    let state = std::mem::replace(&mut *session.auth.borrow_mut(), Auth::Failed);
    match state {
        Auth::Token { mechanism: SaslMechanism::Plain, .. } => {
            let user = plain(ctx, token).await?;
            session.authenticate(user);
            tracing::debug!(peer = %session.peer_text, principal = session.principal(), "authenticated with PLAIN");
            Ok(Vec::new())
        }
        Auth::Token { mechanism: SaslMechanism::Scram(mech), raw } => {
            let first = ClientFirst::parse(token).map_err(|e| Failure::auth(e.to_string(), None))?;
            let credential = credential(ctx, &first.user, mech).await?;
            let fake_salt = ctx.security.fake_salts.salt(mech, &first.user);
            let (exchange, server_first) = Exchange::start(mech, first, credential, &scram::server_nonce(), &fake_salt);
            *session.auth.borrow_mut() = Auth::ScramFinal { exchange: Box::new(exchange), raw };
            Ok(server_first)
        }
        Auth::ScramFinal { exchange, .. } => {
            let user = exchange.user().to_string();
            let server_final = exchange.finish(token).map_err(|e| {
                let msg = match e {
                    scram::ScramError::InvalidProof => format!(
                        "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
                        SaslMechanism::Scram(exchange.mechanism()).name()
                    ),
                    other => other.to_string(),
                };
                Failure::auth(msg, Some(user.clone()))
            })?;
            session.authenticate(user);
            tracing::debug!(peer = %session.peer_text, principal = session.principal(), "authenticated with SCRAM");
            Ok(server_final)
        }
        Auth::Done | Auth::Handshake | Auth::Failed => {
            Err(Failure { code: ILLEGAL_SASL_STATE, client: "unexpected SASL token".into(), user: None })
        }
    }
}

/// PLAIN (RFC 4616): `authzid NUL authcid NUL password`, checked against the
/// user's SCRAM credential (SHA-512 first, else SHA-256).
async fn plain(ctx: &Ctx, token: &[u8]) -> Result<String, Failure> {
    let mut parts = token.split(|b| *b == 0);
    let (Some(authzid), Some(user), Some(password), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Failure::auth("malformed PLAIN token", None));
    };
    let (Ok(authzid), Ok(user), Ok(password)) =
        (std::str::from_utf8(authzid), std::str::from_utf8(user), std::str::from_utf8(password))
    else {
        return Err(Failure::auth("malformed PLAIN token (not UTF-8)", None));
    };
    if user.is_empty() || password.is_empty() || user.len() > scram::USER_BYTES_MAX {
        return Err(Failure::auth("malformed PLAIN token (empty user or password)", None));
    }
    if !authzid.is_empty() && authzid != user {
        return Err(Failure::auth("authorization id differs from the user name", Some(user.to_string())));
    }
    for mech in [Mechanism::Sha512, Mechanism::Sha256] {
        if let Some(cred) = credential(ctx, user, mech).await? {
            if cred.matches_password(mech, password) {
                return Ok(user.to_string());
            }
            break;
        }
    }
    // Kafka's words, whether the user exists or not.
    Err(Failure::auth("Authentication failed: Invalid username or password", Some(user.to_string())))
}

/// The user's stored credential for `mech`, if any.
async fn credential(ctx: &Ctx, user: &str, mech: Mechanism) -> Result<Option<Credential>, Failure> {
    let key = ctx.cluster.keys.scram_credential(user, mech.name());
    let stored = ctx.cluster.store.get(&key).await.map_err(|e| {
        tracing::warn!("reading SCRAM credentials: {e}");
        Failure::auth("the credential store is unavailable", Some(user.to_string()))
    })?;
    let Some(stored) = stored else { return Ok(None) };
    let record = serde_json::from_slice(&stored.value)
        .ok()
        .and_then(|r| Credential::from_record(&r))
        .ok_or_else(|| Failure::auth("the stored credential is unreadable", Some(user.to_string())))?;
    Ok(Some(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_delays_grow_per_address_and_are_bounded() {
        let d = FailureDelays::default();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let got: Vec<u64> = (0..8).map(|_| d.on_failure(a).as_millis() as u64).collect();
        assert_eq!(got, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(d.on_failure(b), Duration::from_millis(100));
        for i in 0..(FAILURE_ADDRESSES_MAX as u32 + 10) {
            d.on_failure(IpAddr::from(i.to_be_bytes()));
        }
        assert!(d.recent.lock().unwrap().len() <= FAILURE_ADDRESSES_MAX);
    }

    #[test]
    fn mechanism_names() {
        for m in SaslMechanism::ALL {
            assert_eq!(SaslMechanism::parse(m.name()), Some(m));
        }
        assert_eq!(SaslMechanism::parse("GSSAPI"), None);
    }
}
