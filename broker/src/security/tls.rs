//! TLS for SSL and SASL_SSL listeners, with rustls (no OpenSSL). The
//! certificate chain and key come from PEM files and are reloaded without a
//! restart: a handshake at least `RELOAD_CHECK_INTERVAL` after the last check
//! looks at both files' modification times, and when either changed loads
//! them again (a pair that fails to load is logged and the previous one kept,
//! so a half-written file never stops the broker serving). With a CA file,
//! clients may (`ssl.client.auth=requested`) or must (`required`) present a
//! certificate it signed; the principal is then the certificate's subject,
//! as Kafka's default `ssl.principal.mapping.rules` make it:
//! `User:CN=client,O=Example,C=US` (RFC 2253: last name component first).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

/// How often, at most, a handshake checks the certificate files for changes.
pub const RELOAD_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

impl ClientAuth {
    pub fn parse(s: &str) -> Option<ClientAuth> {
        match s {
            "none" => Some(ClientAuth::None),
            "requested" => Some(ClientAuth::Requested),
            "required" => Some(ClientAuth::Required),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_key_pair(cert: &Path, key: &Path) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing certificates in {}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert.display());
    let key_der =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading a private key from {}", key.display()))?;
    let signing = provider()
        .key_provider
        .load_private_key(key_der)
        .with_context(|| format!("{} is not a usable private key", key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().with_context(|| format!("{} does not belong to {}", key.display(), cert.display()))?;
    Ok(Arc::new(certified))
}

fn mtimes(cert: &Path, key: &Path) -> (Option<SystemTime>, Option<SystemTime>) {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (m(cert), m(key))
}

/// The server's certificate, reloaded when its files change.
#[derive(Debug)]
struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    mtimes: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

impl Reloading {
    fn current(&self) -> Arc<CertifiedKey> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.checked.elapsed() >= RELOAD_CHECK_INTERVAL {
            state.checked = Instant::now();
            let now = mtimes(&self.cert, &self.key);
            if now != state.mtimes {
                state.mtimes = now;
                match load_key_pair(&self.cert, &self.key) {
                    Ok(key) => {
                        tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                        state.key = key;
                    }
                    Err(e) => tracing::warn!("TLS certificate not reloaded, keeping the previous one: {e:#}"),
                }
            }
        }
        state.key.clone()
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Builds the TLS configuration every TLS listener shares.
pub fn server_config(files: &TlsFiles) -> anyhow::Result<Arc<ServerConfig>> {
    let key = load_key_pair(&files.cert, &files.key)?;
    let resolver = Reloading {
        cert: files.cert.clone(),
        key: files.key.clone(),
        state: Mutex::new(Loaded { key, mtimes: mtimes(&files.cert, &files.key), checked: Instant::now() }),
    };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match (&files.ca, files.client_auth) {
        (_, ClientAuth::None) => builder.with_no_client_auth(),
        (None, _) => anyhow::bail!("--ssl-client-auth requested or required needs --ssl-cafile"),
        (Some(ca), auth) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))? {
                roots.add(cert.with_context(|| format!("parsing {}", ca.display()))?)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if auth == ClientAuth::Requested { verifier.allow_unauthenticated() } else { verifier };
            builder.with_client_cert_verifier(verifier.build().context("client certificate verifier")?)
        }
    };
    Ok(Arc::new(builder.with_cert_resolver(Arc::new(resolver))))
}

/// The subject of a DER certificate as RFC 2253 text (what Java's
/// `X500Principal.getName()` gives, hence Kafka's SSL principal).
pub fn subject_name(cert_der: &[u8]) -> Option<String> {
    let (cert, _) = der::element(cert_der, der::SEQUENCE)?;
    let (mut tbs, _) = der::element(cert, der::SEQUENCE)?;
    if tbs.first() == Some(&0xa0) {
        tbs = der::element(tbs, 0xa0)?.1; // [0] version
    }
    let tbs = der::element(tbs, der::INTEGER)?.1; // serial
    let tbs = der::element(tbs, der::SEQUENCE)?.1; // signature algorithm
    let tbs = der::element(tbs, der::SEQUENCE)?.1; // issuer
    let tbs = der::element(tbs, der::SEQUENCE)?.1; // validity
    let (mut name, _) = der::element(tbs, der::SEQUENCE)?; // subject
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (mut set, rest) = der::element(name, der::SET)?;
        name = rest;
        let mut parts = Vec::new();
        while !set.is_empty() {
            let (atv, rest) = der::element(set, der::SEQUENCE)?;
            set = rest;
            let (oid, value) = der::element(atv, der::OID)?;
            let (&tag, _) = value.split_first()?;
            let (text, _) = der::element(value, tag)?;
            // As Java does: RFC 2253's keywords with their text, other
            // attributes as the dotted OID and the value's DER in hex.
            let part = match (attribute_name(oid), tag) {
                // UTF8String, PrintableString, TeletexString, IA5String
                (Some(name), 0x0c | 0x13 | 0x14 | 0x16) => {
                    format!("{name}={}", escape_rfc2253(&String::from_utf8_lossy(text)))
                }
                (Some(name), _) => format!("{name}=#{}", hex(value)),
                (None, _) => format!("{}=#{}", dotted_oid(oid), hex(value)),
            };
            parts.push(part);
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

fn attribute_name(oid: &[u8]) -> Option<&'static str> {
    Some(match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x09] => "STREET",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        _ => return None,
    })
}

fn dotted_oid(oid: &[u8]) -> String {
    let mut out = Vec::new();
    let mut n: u64 = 0;
    for (i, b) in oid.iter().enumerate() {
        n = (n << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if out.is_empty() {
                let first = (n / 40).min(2);
                out.push(first);
                out.push(n - first * 40);
            } else {
                out.push(n);
            }
            n = 0;
        } else if i == oid.len() - 1 {
            break;
        }
    }
    out.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn escape_rfc2253(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let last = s.chars().count().saturating_sub(1);
    for (i, c) in s.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The few DER rules a certificate's subject needs (X.690): tag, length, value.
mod der {
    pub const INTEGER: u8 = 0x02;
    pub const OID: u8 = 0x06;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;

    /// The content of the element at the front of `input` if it has `tag`,
    /// and what follows it.
    pub fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&t, rest) = input.split_first()?;
        if t != tag {
            return None;
        }
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            first as usize
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return None;
        }
        Some(rest.split_at(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths() {
        assert_eq!(der::element(&[0x30, 0x02, 1, 2, 9], 0x30), Some((&[1u8, 2][..], &[9u8][..])));
        assert_eq!(der::element(&[0x30, 0x81, 0x01, 7], 0x30), Some((&[7u8][..], &[][..])));
        assert_eq!(der::element(&[0x30, 0x05, 1], 0x30), None);
        assert_eq!(der::element(&[0x31, 0x00], 0x30), None);
        assert_eq!(der::element(&[0x30, 0x80], 0x30), None);
    }

    #[test]
    fn rfc2253_escaping_and_oids() {
        assert_eq!(escape_rfc2253("Ex, Inc."), "Ex\\, Inc.");
        assert_eq!(escape_rfc2253("eng+ops"), "eng\\+ops");
        assert_eq!(escape_rfc2253("#1 "), "\\#1\\ ");
        assert_eq!(dotted_oid(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01]), "1.2.840.113549.1.9.1");
        assert_eq!(attribute_name(&[0x55, 0x04, 0x03]), Some("CN"));
    }

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 0x80 {
            out.push(content.len() as u8);
        } else {
            out.extend([0x82, (content.len() >> 8) as u8, content.len() as u8]);
        }
        out.extend_from_slice(content);
        out
    }

    fn rdn(attrs: &[(&[u8], u8, &str)]) -> Vec<u8> {
        let set: Vec<u8> = attrs
            .iter()
            .flat_map(|(oid, tag, v)| tlv(0x30, &[tlv(0x06, oid), tlv(*tag, v.as_bytes())].concat()))
            .collect();
        tlv(0x31, &set)
    }

    /// A certificate's DER as X.509 lays it out, up to the subject (the rest
    /// is not read), with the subject C=US / O=Ex, Inc. / OU=eng+UID=7 / CN=client one.
    #[test]
    fn the_subject_of_a_certificate_reads_last_component_first() {
        let subject = tlv(
            0x30,
            &[
                rdn(&[(&[0x55, 4, 6], 0x13, "US")]),
                rdn(&[(&[0x55, 4, 10], 0x0c, "Ex, Inc.")]),
                rdn(&[
                    (&[0x55, 4, 11], 0x0c, "eng"),
                    (&[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 1, 1], 0x0c, "7"),
                ]),
                rdn(&[(&[0x55, 4, 3], 0x0c, "client one")]),
                rdn(&[(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 9, 1], 0x16, "a@b")]),
            ]
            .concat(),
        );
        let tbs = tlv(
            0x30,
            &[
                tlv(0xa0, &tlv(0x02, &[2])),
                tlv(0x02, &[0x12, 0x34]),
                tlv(0x30, &tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 3, 2])),
                tlv(0x30, &rdn(&[(&[0x55, 4, 3], 0x0c, "issuer")])),
                tlv(0x30, &[tlv(0x17, b"260101000000Z"), tlv(0x17, b"360101000000Z")].concat()),
                subject,
                tlv(0x30, &[0u8; 200]), // the key: long form lengths around it
            ]
            .concat(),
        );
        let cert = tlv(0x30, &[tbs, tlv(0x30, &[]), tlv(0x03, &[0])].concat());
        assert_eq!(
            subject_name(&cert).as_deref(),
            Some("1.2.840.113549.1.9.1=#1603614062,CN=client one,OU=eng+UID=7,O=Ex\\, Inc.,C=US")
        );
        assert_eq!(subject_name(&cert[..20]), None);
        assert_eq!(subject_name(b"not a certificate"), None);
    }
}
