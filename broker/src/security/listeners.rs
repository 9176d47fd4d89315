//! Named listeners, as Kafka names them: `listeners=NAME://host:port,...`,
//! each with a security protocol (`listener.security.protocol.map`; the four
//! protocol names map to themselves), and what each advertises
//! (`advertised.listeners`). A client is told the addresses of the listener
//! it came in on.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::Context as _;

/// Listeners one broker may serve at once.
pub const LISTENERS_MAX: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(s: &str) -> Option<SecurityProtocol> {
        Some(match s.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }
}

/// One listener as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub name: String,
    pub protocol: SecurityProtocol,
    /// Where it binds (port 0: a free port, resolved at start).
    pub bind: SocketAddr,
    /// What it advertises; `None`: its bound address.
    pub advertised: Option<(String, u16)>,
}

/// Splits `NAME://host:port` (host may be empty, meaning every interface,
/// or a bracketed IPv6 address).
fn split_url(s: &str) -> anyhow::Result<(String, String, u16)> {
    let (name, rest) = s.trim().split_once("://").with_context(|| format!("listener '{s}' is not NAME://host:port"))?;
    anyhow::ensure!(
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
        "listener name '{name}' must be letters, digits, '_' or '-'"
    );
    let (host, port) = rest.rsplit_once(':').with_context(|| format!("listener '{s}' has no port"))?;
    let port: u16 = port.parse().with_context(|| format!("listener '{s}': bad port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((name.to_ascii_uppercase(), host.to_string(), port))
}

/// Resolves the flags into listeners. `map` holds `NAME:PROTOCOL` pairs;
/// a name missing from it must itself be a protocol name (Kafka's default map).
pub fn parse(listeners: &[String], advertised: &[String], map: &[String]) -> anyhow::Result<Vec<ListenerSpec>> {
    anyhow::ensure!(!listeners.is_empty(), "no listener given");
    anyhow::ensure!(listeners.len() <= LISTENERS_MAX, "at most {LISTENERS_MAX} listeners");
    let mut protocols = Vec::new();
    for pair in map {
        let (name, proto) = pair
            .split_once(':')
            .with_context(|| format!("listener.security.protocol.map entry '{pair}' is not NAME:PROTOCOL"))?;
        let proto = SecurityProtocol::parse(proto).with_context(|| format!("unknown security protocol '{proto}'"))?;
        protocols.push((name.trim().to_ascii_uppercase(), proto));
    }
    let mut out: Vec<ListenerSpec> = Vec::new();
    for l in listeners {
        let (name, host, port) = split_url(l)?;
        anyhow::ensure!(out.iter().all(|o| o.name != name), "listener name {name} is used twice");
        let protocol = match protocols.iter().find(|(n, _)| *n == name) {
            Some((_, p)) => *p,
            None => SecurityProtocol::parse(&name).with_context(|| {
                format!(
                    "listener {name} has no security protocol: add {name}:PROTOCOL to --listener-security-protocol-map"
                )
            })?,
        };
        let host = if host.is_empty() { "0.0.0.0".to_string() } else { host };
        let bind = (host.as_str(), port)
            .to_socket_addrs()
            .with_context(|| format!("resolving listener {name} host '{host}'"))?
            .next()
            .with_context(|| format!("listener {name}: '{host}' resolves to no address"))?;
        anyhow::ensure!(
            port == 0 || out.iter().all(|o| o.bind.port() != port),
            "listeners {name} and another both bind port {port}"
        );
        out.push(ListenerSpec { name, protocol, bind, advertised: None });
    }
    for a in advertised {
        let (name, host, port) = split_url(a)?;
        let spec = out
            .iter_mut()
            .find(|o| o.name == name)
            .with_context(|| format!("advertised listener {name} is not among --listeners"))?;
        anyhow::ensure!(!host.is_empty() && port != 0, "advertised listener {name} needs a host and a port");
        spec.advertised = Some((host, port));
    }
    Ok(out)
}

/// `--listen` and `--advertised-listener` of builds before named listeners:
/// one PLAINTEXT listener.
pub fn legacy(listen: SocketAddr, advertised: Option<&str>) -> anyhow::Result<Vec<ListenerSpec>> {
    let advertised = match advertised {
        Some(l) => {
            let (h, p) = l.rsplit_once(':').context("--advertised-listener wants host:port")?;
            Some((h.to_string(), p.parse().context("--advertised-listener: bad port")?))
        }
        None => None,
    };
    Ok(vec![ListenerSpec { name: "PLAINTEXT".into(), protocol: SecurityProtocol::Plaintext, bind: listen, advertised }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kafka_style_listeners_parse() {
        let l = parse(&v(&["PLAINTEXT://127.0.0.1:9092", "SASL_SSL://127.0.0.1:9093"]), &[], &[]).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].protocol, SecurityProtocol::Plaintext);
        assert_eq!(l[1].protocol, SecurityProtocol::SaslSsl);
        assert_eq!(l[1].bind, "127.0.0.1:9093".parse().unwrap());
        assert!(l[1].protocol.tls() && l[1].protocol.sasl());
    }

    #[test]
    fn custom_names_need_the_protocol_map() {
        let err = parse(&v(&["INTERNAL://127.0.0.1:0"]), &[], &[]).unwrap_err();
        assert!(err.to_string().contains("listener-security-protocol-map"), "{err}");
        let l = parse(&v(&["internal://127.0.0.1:0"]), &[], &v(&["INTERNAL:SASL_PLAINTEXT"])).unwrap();
        assert_eq!((l[0].name.as_str(), l[0].protocol), ("INTERNAL", SecurityProtocol::SaslPlaintext));
    }

    #[test]
    fn advertised_listeners_attach_by_name() {
        let l = parse(&v(&["PLAINTEXT://:0", "SSL://127.0.0.1:0"]), &v(&["SSL://broker1.example:19093"]), &[]).unwrap();
        assert_eq!(l[0].bind.ip().to_string(), "0.0.0.0");
        assert_eq!(l[0].advertised, None);
        assert_eq!(l[1].advertised, Some(("broker1.example".into(), 19093)));
        assert!(parse(&v(&["SSL://127.0.0.1:0"]), &v(&["PLAINTEXT://h:1"]), &[]).is_err());
    }

    #[test]
    fn bad_listeners_are_refused() {
        assert!(parse(&v(&["127.0.0.1:9092"]), &[], &[]).is_err());
        assert!(parse(&v(&["PLAINTEXT://127.0.0.1:1", "PLAINTEXT://127.0.0.1:2"]), &[], &[]).is_err());
        assert!(parse(&v(&["PLAINTEXT://127.0.0.1:5", "SSL://127.0.0.1:5"]), &[], &[]).is_err());
        assert!(parse(&v(&["PLAINTEXT://127.0.0.1:x"]), &[], &[]).is_err());
        assert!(parse(&v(&["X://127.0.0.1:1"]), &[], &v(&["X:TLS"])).is_err());
    }

    #[test]
    fn the_old_flags_make_one_plaintext_listener() {
        let l = legacy("127.0.0.1:9092".parse().unwrap(), Some("kafka.example:9092")).unwrap();
        assert_eq!(l[0].name, "PLAINTEXT");
        assert_eq!(l[0].advertised, Some(("kafka.example".into(), 9092)));
    }
}
