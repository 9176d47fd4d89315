//! One client connection's security state: the listener it came in on, its
//! peer, where it is in SASL authentication and who it authenticated as.
//! Lives on the connection's shard (Rc/RefCell): nothing crosses threads.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use super::sasl::Auth;
use super::Listener;

/// The principal of connections nobody authenticated (PLAINTEXT, SSL without a client certificate).
pub const ANONYMOUS: &str = "ANONYMOUS";

pub struct Session {
    pub peer: SocketAddr,
    /// `peer` as text, for log lines and JoinGroup's client host.
    pub peer_text: Rc<str>,
    pub listener: Arc<Listener>,
    /// The user name of `User:<name>`.
    principal: RefCell<String>,
    pub(super) auth: RefCell<Auth>,
    /// Set when a response must be the connection's last (authentication
    /// failed): why, for the log.
    close_after_response: RefCell<Option<String>>,
    authenticated: Cell<bool>,
}

impl Session {
    pub fn new(peer: SocketAddr, listener: Arc<Listener>) -> Session {
        let sasl = listener.protocol.sasl();
        Session {
            peer,
            peer_text: Rc::from(peer.to_string()),
            listener,
            principal: RefCell::new(ANONYMOUS.to_string()),
            auth: RefCell::new(if sasl { Auth::Handshake } else { Auth::Done }),
            close_after_response: RefCell::new(None),
            authenticated: Cell::new(!sasl),
        }
    }

    /// Whether requests other than ApiVersions and SASL's may run.
    pub fn authenticated(&self) -> bool {
        self.authenticated.get()
    }

    /// After a v0 SaslHandshake, frames are bare SASL tokens, not requests.
    pub fn expects_raw_token(&self) -> bool {
        self.auth.borrow().raw()
    }

    /// The user name (`User:<name>`); `ANONYMOUS` before authentication.
    pub fn principal(&self) -> String {
        self.principal.borrow().clone()
    }

    /// A TLS client certificate names the principal of an SSL listener's
    /// connection (on SASL_SSL, SASL names it).
    pub fn set_certificate_principal(&self, subject: String) {
        if !self.listener.protocol.sasl() {
            *self.principal.borrow_mut() = subject;
        }
    }

    pub(super) fn authenticate(&self, user: String) {
        *self.principal.borrow_mut() = user;
        *self.auth.borrow_mut() = Auth::Done;
        self.authenticated.set(true);
    }

    pub(super) fn close_after_response(&self, why: String) {
        *self.auth.borrow_mut() = Auth::Failed;
        *self.close_after_response.borrow_mut() = Some(why);
    }

    /// Why the connection must close now that its response is written.
    pub fn take_close(&self) -> Option<String> {
        self.close_after_response.borrow_mut().take()
    }
}
