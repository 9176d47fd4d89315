//! The client side of the inter-broker listener: how a follower connects
//! to its leader (`replication/wire.rs`). The listener's security protocol
//! is every broker's own inter-broker listener's (they must agree): TLS
//! (trusting `--ssl-cafile`, presenting the broker's own certificate when
//! the leader asks for one) and SASL (PLAIN or SCRAM with the
//! `--inter-broker-sasl-*` credentials) as needed, before the first Fetch.
//! Set once at start (`configure`); a broker that never follows anything
//! never uses it.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::listeners::SecurityProtocol;
use super::sasl::SaslMechanism;
use super::scram::ClientExchange;
use super::tls::TlsFiles;

/// Largest SASL answer a follower accepts from its leader.
const SASL_RESPONSE_BYTES_MAX: usize = 64 * 1024;

/// How followers reach leaders.
pub struct InterBrokerClient {
    tls: Option<tokio_rustls::TlsConnector>,
    sasl: Option<SaslCredentials>,
}

#[derive(Clone)]
pub struct SaslCredentials {
    pub mechanism: SaslMechanism,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} as {} (password not shown)", self.mechanism.name(), self.user)
    }
}

static CLIENT: OnceLock<InterBrokerClient> = OnceLock::new();

/// Sets how this broker's followers connect (once, at start).
pub fn configure(
    protocol: SecurityProtocol,
    tls_files: Option<&TlsFiles>,
    sasl: Option<SaslCredentials>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !protocol.sasl() || sasl.is_some(),
        "a SASL inter-broker listener needs --inter-broker-sasl-username and --inter-broker-sasl-password-file"
    );
    let tls = if protocol.tls() {
        let files = tls_files.context("a TLS inter-broker listener needs --ssl-certfile and --ssl-keyfile")?;
        let ca = files
            .ca
            .as_ref()
            .context("a TLS inter-broker listener needs --ssl-cafile (the CA of the brokers' certificates)")?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))? {
            roots.add(cert.with_context(|| format!("parsing {}", ca.display()))?)?;
        }
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(&files.cert)?.collect::<Result<_, _>>()?;
        let key = PrivateKeyDer::from_pem_file(&files.key)?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .context("the broker's certificate as a client certificate")?;
        Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
    } else {
        None
    };
    let sasl = if protocol.sasl() { sasl } else { None };
    let _ = CLIENT.set(InterBrokerClient { tls, sasl });
    Ok(())
}

pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Connects to a leader's inter-broker listener, ready for requests.
pub async fn connect(host: &str, port: u16, client_id: &str, timeout: Duration) -> std::io::Result<ClientStream> {
    let io = |e: anyhow::Error| std::io::Error::other(format!("{e:#}"));
    let setup = async {
        let tcp = TcpStream::connect((host, port)).await?;
        tcp.set_nodelay(true)?;
        let client = CLIENT.get();
        let mut stream = match client.and_then(|c| c.tls.as_ref()) {
            Some(tls) => {
                let name = ServerName::try_from(host.to_string()).map_err(|e| io(e.into()))?;
                ClientStream::Tls(Box::new(tls.connect(name, tcp).await?))
            }
            None => ClientStream::Plain(tcp),
        };
        if let Some(creds) = client.and_then(|c| c.sasl.as_ref()) {
            authenticate(&mut stream, creds, client_id).await.map_err(io)?;
        }
        std::io::Result::Ok(stream)
    };
    match tokio::time::timeout(timeout, setup).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connecting to the leader timed out")),
    }
}

async fn call<Req, Resp>(
    stream: &mut ClientStream,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &str,
    req: &Req,
) -> anyhow::Result<Resp>
where
    Req: Encodable + HeaderVersion,
    Resp: Decodable + HeaderVersion,
{
    let mut b = BytesMut::with_capacity(128);
    b.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())))
        .encode(&mut b, Req::header_version(version))?;
    req.encode(&mut b, version)?;
    let len = (b.len() - 4) as i32;
    b[..4].copy_from_slice(&len.to_be_bytes());
    stream.write_all(&b).await?;
    stream.flush().await?;
    let size = stream.read_i32().await?;
    anyhow::ensure!(size >= 4 && size as usize <= SASL_RESPONSE_BYTES_MAX, "answer of {size} bytes");
    let mut frame = BytesMut::zeroed(size as usize);
    stream.read_exact(&mut frame).await?;
    let mut frame: Bytes = frame.freeze();
    let h = ResponseHeader::decode(&mut frame, Resp::header_version(version))?;
    anyhow::ensure!(h.correlation_id == correlation_id, "answer for request {}", h.correlation_id);
    let resp = Resp::decode(&mut frame, version)?;
    anyhow::ensure!(!frame.has_remaining(), "{} bytes after the answer", frame.remaining());
    Ok(resp)
}

/// SaslHandshake v1, then SaslAuthenticate v1 tokens.
async fn authenticate(stream: &mut ClientStream, creds: &SaslCredentials, client_id: &str) -> anyhow::Result<()> {
    let req = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(creds.mechanism.name()));
    let resp: SaslHandshakeResponse = call(stream, ApiKey::SaslHandshake, 1, -1, client_id, &req).await?;
    anyhow::ensure!(resp.error_code == 0, "SaslHandshake for {} refused ({})", creds.mechanism.name(), resp.error_code);
    match creds.mechanism {
        SaslMechanism::Plain => {
            send_token(stream, creds, client_id, format!("\0{}\0{}", creds.user, creds.password).into_bytes(), -2)
                .await?;
        }
        SaslMechanism::Scram(mech) => {
            let exchange = ClientExchange::new(mech, &creds.user);
            let server_first = send_token(stream, creds, client_id, exchange.first_message(), -2).await?;
            let (client_final, expected) = exchange.final_message(&creds.password, &server_first)?;
            let server_final = send_token(stream, creds, client_id, client_final, -3).await?;
            anyhow::ensure!(server_final[..] == expected[..], "the leader did not prove it knows the credential");
        }
    }
    Ok(())
}

async fn send_token(
    stream: &mut ClientStream,
    creds: &SaslCredentials,
    client_id: &str,
    bytes: Vec<u8>,
    correlation_id: i32,
) -> anyhow::Result<Bytes> {
    let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes));
    let resp: SaslAuthenticateResponse =
        call(stream, ApiKey::SaslAuthenticate, 1, correlation_id, client_id, &req).await?;
    anyhow::ensure!(
        resp.error_code == 0,
        "authentication as {} refused: {}",
        creds.user,
        resp.error_message.as_deref().unwrap_or("")
    );
    Ok(resp.auth_bytes)
}

impl AsyncRead for ClientStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
