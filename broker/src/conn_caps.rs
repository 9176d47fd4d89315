//! Caps on open connections: broker-wide (`--max-connections`, Kafka's
//! `max.connections`) and per client address (`--max-connections-per-ip`,
//! Kafka's `max.connections.per.ip`). A connection over a cap is accepted and
//! closed at once, so the client's connect does not hang in the backlog; it
//! sees the connection closed before any answer.
//!
//! The counters are atomics shared by every shard thread (each accepts on its
//! own SO_REUSEPORT listener). Per address they are a count-min sketch: two
//! rows of `SLOTS_PER_ROW` counters, each address counted in one slot of each
//! row chosen by a hash keyed at random per process (so no client can aim
//! its addresses at another's slots). Its estimate (the smaller of its two
//! counters) is never below an address's true count: colliding addresses can
//! only be refused early, never admitted over the cap, and that takes a
//! collision in both rows (about one in 2^32 for two given addresses).

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::log_limit::{self, Cause};

/// Broker-wide default: ten thousand clients, far above what one broker
/// normally serves, and 10,000 descriptors, which `server::run` sets aside
/// from the file-descriptor limit before sizing the partition budget (with
/// the usual ceiling of 2^20 descriptors that leaves room for ~345,000
/// partitions). Kafka's default is unbounded.
pub const MAX_CONNECTIONS_DEFAULT: usize = 10_000;
/// Per address default: a tenth of the broker's, so one host (or one
/// misbehaving client) cannot take every slot, while a host running hundreds
/// of clients still fits. Kafka's default is unbounded; clients behind one
/// NAT address may need it raised.
pub const MAX_CONNECTIONS_PER_IP_DEFAULT: usize = 1_000;
/// The least `fit_fd_limit` lowers the broker-wide cap to.
const CONNECTIONS_MIN: usize = 128;
/// Counters per row of the per-address sketch (2 rows x 2^15 x 4 bytes =
/// 256 KiB, fixed).
const SLOTS_PER_ROW: usize = 1 << 15;

pub struct ConnectionCaps {
    max_connections: usize,
    max_per_ip: usize,
    open: AtomicUsize,
    per_ip: Box<[AtomicU32]>,
    keys: std::collections::hash_map::RandomState,
    refused_total: AtomicU64,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MaxConnections,
    MaxConnectionsPerIp,
}

/// An open connection's place under the caps; given back on drop.
pub struct Admitted {
    caps: Arc<ConnectionCaps>,
    slots: [usize; 2],
}

impl Drop for Admitted {
    fn drop(&mut self) {
        for s in self.slots {
            self.caps.per_ip[s].fetch_sub(1, Ordering::Relaxed);
        }
        self.caps.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnectionCaps {
    pub fn new(max_connections: usize, max_per_ip: usize) -> ConnectionCaps {
        ConnectionCaps {
            max_connections,
            max_per_ip,
            open: AtomicUsize::new(0),
            per_ip: (0..2 * SLOTS_PER_ROW).map(|_| AtomicU32::new(0)).collect(),
            keys: Default::default(),
            refused_total: AtomicU64::new(0),
        }
    }

    #[cfg(test)]
    fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn slots(&self, ip: IpAddr) -> [usize; 2] {
        let h = self.keys.hash_one(ip.to_canonical());
        let row0 = (h as usize) % SLOTS_PER_ROW;
        let row1 = ((h >> 32) as usize) % SLOTS_PER_ROW;
        [row0, SLOTS_PER_ROW + row1]
    }

    /// Counts a new connection from `ip`, or says which cap refuses it.
    /// Counted first and undone if over, so two shards admitting at once can
    /// never both pass a cap.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refusal> {
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.max_connections {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(self.refused(Refusal::MaxConnections));
        }
        let slots = self.slots(ip);
        let estimate = slots.iter().map(|&s| self.per_ip[s].fetch_add(1, Ordering::Relaxed) + 1).min().unwrap_or(0);
        let admitted = Admitted { caps: self.clone(), slots };
        if estimate as usize > self.max_per_ip {
            drop(admitted);
            return Err(self.refused(Refusal::MaxConnectionsPerIp));
        }
        Ok(admitted)
    }

    fn refused(&self, why: Refusal) -> Refusal {
        self.refused_total.fetch_add(1, Ordering::Relaxed);
        why
    }

    /// One (rate-limited) line for a refused connection.
    pub fn log_refusal(&self, why: Refusal, peer: std::net::SocketAddr) {
        if !log_limit::admit(Cause::ConnectionCap) {
            return;
        }
        let refused_total = self.refused_total.load(Ordering::Relaxed);
        match why {
            Refusal::MaxConnections => tracing::warn!(
                %peer, refused_total,
                "refusing connection: max.connections {} reached", self.max_connections
            ),
            Refusal::MaxConnectionsPerIp => tracing::warn!(
                %peer, refused_total,
                "refusing connection: max.connections.per.ip {} reached for {}", self.max_per_ip, peer.ip()
            ),
        }
    }
}

/// The broker-wide cap that fits the descriptor limit: connections may take
/// at most half of what is left beyond `reserved_fds` (the rest goes to
/// partition logs), but never fewer than `CONNECTIONS_MIN` (a broker under a
/// tiny descriptor limit then serves a few clients and fails accepts beyond,
/// as it did before there were caps). The default is lowered quietly (one
/// info line); a value asked for on the command line with a warning.
pub fn fit_fd_limit(asked: Option<usize>, fd_limit: u64, reserved_fds: u64) -> usize {
    let room = ((fd_limit.saturating_sub(reserved_fds) / 2) as usize).max(CONNECTIONS_MIN);
    let wanted = asked.unwrap_or(MAX_CONNECTIONS_DEFAULT);
    if wanted <= room {
        return wanted;
    }
    if asked.is_some() {
        tracing::warn!(fd_limit, "max.connections lowered from {wanted} to {room} to fit the file descriptor limit");
    } else {
        tracing::info!(fd_limit, "max.connections is {room} (half the file descriptors left for logs and clients)");
    }
    room
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_per_address_and_overall() {
        let caps = Arc::new(ConnectionCaps::new(5, 3));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let mut held: Vec<_> = (0..3).map(|_| caps.admit(a).unwrap()).collect();
        assert_eq!(caps.admit(a).err(), Some(Refusal::MaxConnectionsPerIp));
        // An IPv4-mapped IPv6 address is the same client.
        assert_eq!(caps.admit("::ffff:127.0.0.1".parse().unwrap()).err(), Some(Refusal::MaxConnectionsPerIp));
        held.push(caps.admit(b).unwrap());
        held.push(caps.admit(b).unwrap());
        assert_eq!(caps.admit(b).err(), Some(Refusal::MaxConnections));
        assert_eq!(caps.open(), 5);
        // A closed connection frees its place under both caps.
        held.remove(0);
        held.push(caps.admit(a).unwrap());
        assert_eq!(caps.open(), 5);
        assert_eq!(caps.refused_total.load(Ordering::Relaxed), 3);
        drop(held);
        assert_eq!(caps.open(), 0);
        assert!(caps.per_ip.iter().all(|c| c.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn the_cap_fits_the_descriptor_limit() {
        assert_eq!(fit_fd_limit(None, 1 << 20, 1024), MAX_CONNECTIONS_DEFAULT);
        assert_eq!(fit_fd_limit(Some(50_000), 1 << 20, 1024), 50_000);
        assert_eq!(fit_fd_limit(None, 4096, 1024), 1536);
        assert_eq!(fit_fd_limit(Some(5), 4096, 1024), 5);
        assert_eq!(fit_fd_limit(None, 1024, 1024), CONNECTIONS_MIN);
    }
}
