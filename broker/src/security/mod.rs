//! Who may talk to the broker, over what: named listeners (`listeners.rs`),
//! the per-connection session (`session.rs`), and the flags that configure
//! them (`args.rs`). docs/operations.md "Security" is the user's view,
//! docs/architecture.md "Security" where each piece sits.

pub mod acl;
pub mod args;
pub mod authz;
pub mod inter_broker;
pub mod listeners;
pub mod sasl;
pub mod scram;
pub mod session;
pub mod stream;
pub mod tls;
pub mod users;

pub use listeners::{ListenerSpec, SecurityProtocol};
pub use session::Session;

/// One listener as the shards serve it (shared by every shard's accept loop).
pub struct Listener {
    pub name: String,
    pub protocol: SecurityProtocol,
    /// SSL and SASL_SSL listeners: the TLS configuration (shared by all).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.name, self.protocol.name())
    }
}

/// Broker-wide security state, shared by every shard.
pub struct SecurityState {
    /// `sasl.enabled.mechanisms`
    pub sasl_mechanisms: Vec<sasl::SaslMechanism>,
    pub failures: sasl::FailureDelays,
    /// Salts shown for unknown SCRAM users (`scram.rs`).
    pub fake_salts: scram::FakeSalts,
    /// ACL checks (`--authorizer`).
    pub authorizer: authz::Authorizer,
}
