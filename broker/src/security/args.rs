//! The security flags, grouped here so `main.rs` only flattens them in.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::acl::Policy;
use super::inter_broker::SaslCredentials;
use super::listeners::{self, ListenerSpec};
use super::sasl::SaslMechanism;
use super::tls::{ClientAuth, TlsFiles};

#[derive(clap::Args, Debug, Clone)]
pub struct SecurityArgs {
    /// `listeners`: NAME://host:port, comma-separated, e.g.
    /// `PLAINTEXT://127.0.0.1:9092,SASL_SSL://0.0.0.0:9093` (replaces --listen;
    /// port 0 picks a free port).
    #[arg(long, value_delimiter = ',', value_name = "NAME://HOST:PORT")]
    pub listeners: Vec<String>,
    /// `advertised.listeners`: NAME://host:port per listener clients reach
    /// differently than it binds (the rest advertise their bound address).
    #[arg(long, value_delimiter = ',', value_name = "NAME://HOST:PORT")]
    pub advertised_listeners: Vec<String>,
    /// `listener.security.protocol.map`: NAME:PROTOCOL for listeners not
    /// named after their protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL).
    #[arg(long, value_delimiter = ',', value_name = "NAME:PROTOCOL")]
    pub listener_security_protocol_map: Vec<String>,
    /// `inter.broker.listener.name`: the listener other brokers fetch from
    /// (default: the first).
    #[arg(long)]
    pub inter_broker_listener_name: Option<String>,
    /// `sasl.enabled.mechanisms` on SASL listeners: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512.
    #[arg(long, value_delimiter = ',', default_value = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512")]
    pub sasl_enabled_mechanisms: Vec<String>,
    /// TLS certificate chain (PEM) of SSL and SASL_SSL listeners; reloaded
    /// when the file changes.
    #[arg(long)]
    pub ssl_certfile: Option<PathBuf>,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1) of --ssl-certfile.
    #[arg(long)]
    pub ssl_keyfile: Option<PathBuf>,
    /// CA certificates (PEM) client certificates must be signed by.
    #[arg(long)]
    pub ssl_cafile: Option<PathBuf>,
    /// `ssl.client.auth`: none, requested or required (needs --ssl-cafile).
    #[arg(long, default_value = "none")]
    pub ssl_client_auth: String,
    /// Check ACLs on every request (Kafka's `authorizer.class.name`); off:
    /// every client may do everything.
    #[arg(long)]
    pub authorizer: bool,
    /// `super.users`: principals allowed everything, `;`-separated (`User:admin;User:broker`).
    #[arg(long, default_value = "")]
    pub super_users: String,
    /// `allow.everyone.if.no.acl.found`: a resource no ACL names is open to all.
    #[arg(long)]
    pub allow_everyone_if_no_acl_found: bool,
    /// `sasl.mechanism.inter.broker.protocol`: how followers authenticate
    /// to a SASL inter-broker listener.
    #[arg(long, default_value = "SCRAM-SHA-512")]
    pub inter_broker_sasl_mechanism: String,
    /// The user followers authenticate as (a SCRAM user of the cluster).
    #[arg(long)]
    pub inter_broker_sasl_username: Option<String>,
    /// A file holding that user's password (first line), not the command line.
    #[arg(long)]
    pub inter_broker_sasl_password_file: Option<PathBuf>,
}

/// The flags' defaults (as clap gives them when none is passed), for code
/// that builds flags without a command line (the settings tests).
impl Default for SecurityArgs {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            security: SecurityArgs,
        }
        <Only as clap::Parser>::parse_from(["laminar"]).security
    }
}

/// The security settings, checked.
#[derive(Debug, Clone)]
pub struct SecurityOptions {
    pub listeners: Vec<ListenerSpec>,
    /// Index in `listeners` of the one brokers use among themselves.
    pub inter_broker: usize,
    pub sasl_mechanisms: Vec<SaslMechanism>,
    /// Certificate files, when a listener speaks TLS.
    pub tls: Option<TlsFiles>,
    pub authorizer: bool,
    pub policy: Policy,
    /// Followers' credentials for a SASL inter-broker listener.
    pub inter_broker_sasl: Option<SaslCredentials>,
}

impl SecurityArgs {
    /// `listen`/`advertised` are the flags of builds before named listeners:
    /// one PLAINTEXT listener, used when `--listeners` is not given.
    pub fn resolve(&self, listen: SocketAddr, advertised: Option<&str>) -> anyhow::Result<SecurityOptions> {
        let listeners = if self.listeners.is_empty() {
            anyhow::ensure!(
                self.advertised_listeners.is_empty(),
                "--advertised-listeners goes with --listeners (or use --advertised-listener with --listen)"
            );
            listeners::legacy(listen, advertised)?
        } else {
            anyhow::ensure!(
                advertised.is_none(),
                "--advertised-listener goes with --listen; use --advertised-listeners"
            );
            listeners::parse(&self.listeners, &self.advertised_listeners, &self.listener_security_protocol_map)?
        };
        let inter_broker = match &self.inter_broker_listener_name {
            None => 0,
            Some(name) => listeners
                .iter()
                .position(|l| l.name.eq_ignore_ascii_case(name))
                .ok_or_else(|| anyhow::anyhow!("--inter-broker-listener-name {name} is not among the listeners"))?,
        };
        let mut sasl_mechanisms = Vec::new();
        for m in &self.sasl_enabled_mechanisms {
            let m = SaslMechanism::parse(m.trim()).ok_or_else(|| {
                anyhow::anyhow!("SASL mechanism '{m}' is not supported (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")
            })?;
            if !sasl_mechanisms.contains(&m) {
                sasl_mechanisms.push(m);
            }
        }
        anyhow::ensure!(
            !sasl_mechanisms.is_empty() || listeners.iter().all(|l| !l.protocol.sasl()),
            "SASL listeners need at least one --sasl-enabled-mechanisms"
        );
        let client_auth = ClientAuth::parse(&self.ssl_client_auth)
            .ok_or_else(|| anyhow::anyhow!("--ssl-client-auth must be none, requested or required"))?;
        let tls = match (&self.ssl_certfile, &self.ssl_keyfile) {
            (Some(cert), Some(key)) => {
                Some(TlsFiles { cert: cert.clone(), key: key.clone(), ca: self.ssl_cafile.clone(), client_auth })
            }
            (None, None) => None,
            _ => anyhow::bail!("--ssl-certfile and --ssl-keyfile go together"),
        };
        anyhow::ensure!(
            tls.is_some() || listeners.iter().all(|l| !l.protocol.tls()),
            "SSL and SASL_SSL listeners need --ssl-certfile and --ssl-keyfile"
        );
        let mut super_users = Vec::new();
        for p in self.super_users.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            anyhow::ensure!(
                p.strip_prefix("User:").is_some_and(|n| !n.is_empty()),
                "--super-users: '{p}' is not User:<name>"
            );
            super_users.push(p.to_string());
        }
        let policy = Policy { super_users, allow_if_no_acl: self.allow_everyone_if_no_acl_found };
        let inter_broker_sasl = match (&self.inter_broker_sasl_username, &self.inter_broker_sasl_password_file) {
            (Some(user), Some(file)) => {
                let mechanism = SaslMechanism::parse(&self.inter_broker_sasl_mechanism).ok_or_else(|| {
                    anyhow::anyhow!(
                        "--inter-broker-sasl-mechanism {} is not supported",
                        self.inter_broker_sasl_mechanism
                    )
                })?;
                let text = std::fs::read_to_string(file).map_err(|e| {
                    anyhow::anyhow!("reading --inter-broker-sasl-password-file {}: {e}", file.display())
                })?;
                let password = text.lines().next().unwrap_or_default().to_string();
                anyhow::ensure!(!password.is_empty(), "{} holds no password", file.display());
                Some(SaslCredentials { mechanism, user: user.clone(), password })
            }
            (None, None) => None,
            _ => anyhow::bail!("--inter-broker-sasl-username and --inter-broker-sasl-password-file go together"),
        };
        Ok(SecurityOptions {
            listeners,
            inter_broker,
            sasl_mechanisms,
            tls,
            authorizer: self.authorizer,
            policy,
            inter_broker_sasl,
        })
    }
}
