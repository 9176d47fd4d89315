//! One prefix watch on etcd that survives: a task on the store's runtime lists
//! the prefix (→ `Reset`), then follows etcd's watch from the revision after
//! the list's, one `Changes` per revision. The rules (README.md, "Watches"):
//!
//! - a broken stream (etcd restarted, connection lost, no answer to a progress
//!   request) is made anew from the revision after the last one delivered,
//!   after a backoff of [`RETRY_MIN`] doubling to [`RETRY_MAX`], so a dead etcd
//!   is tried once per 2 s, not in a spin;
//! - etcd says that revision was compacted, or cancels the watch (then after a
//!   backoff), or sends a response over [`WATCH_RESPONSE_BYTES_MAX`], or the
//!   consumer lags (the sink refuses changes): list again and `Reset`;
//! - the consumer dropped its stream: stop (noticed within [`POLL_INTERVAL`]).

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, WatchOptions, WatchResponse};
use tokio::time::Instant;

use super::errors::{is_compacted, is_response_too_large};
use super::members::Members;
use super::{list, prefix_range, revision, EtcdOptions};
use crate::watch::{WatchEvent, WatchSink};
use crate::Versioned;

/// Largest watch response decoded. etcd sends a revision's events in one
/// response (up to 1,000 revisions batched while a watcher catches up), so a
/// huge prefix delete can be large; anything over this is re-listed instead.
pub(super) const WATCH_RESPONSE_BYTES_MAX: usize = 64 << 20;
/// First wait before reconnecting a broken watch; doubles per failure.
const RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest wait between reconnect attempts while etcd is unreachable.
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How often a quiet watch checks whether its consumer is gone and whether etcd
/// owes it a progress report.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Why following a stream stopped.
enum End {
    /// The consumer dropped its stream.
    Closed,
    /// Changes cannot continue without a gap: list again and reset. `pause`:
    /// wait a backoff first (etcd canceled the watch, and may again).
    Reset { why: String, pause: bool },
    /// The stream broke; reconnect from the next revision after a backoff.
    Broken(String),
}

/// Doubling reconnect delay, reset once a stream is established.
struct Backoff {
    next: Duration,
    /// Failures since the last established stream; paces the warnings.
    failures: u32,
}

/// While etcd stays unreachable, one warning per this many failed attempts
/// (about one a minute at [`RETRY_MAX`]); the others are logged at debug.
const WARN_EVERY_FAILURES: u32 = 30;

impl Backoff {
    fn new() -> Backoff {
        Backoff { next: RETRY_MIN, failures: 0 }
    }

    fn reset(&mut self) {
        self.next = RETRY_MIN;
        self.failures = 0;
    }

    /// Logs a failure (a warning for the first and every
    /// [`WARN_EVERY_FAILURES`]th) and waits before the next attempt.
    async fn failed(&mut self, prefix: &str, what: &str, why: &str) {
        self.failures += 1;
        if self.failures == 1 || self.failures.is_multiple_of(WARN_EVERY_FAILURES) {
            tracing::warn!(%prefix, %why, failures = self.failures, "etcd watch: {what}; retrying");
        } else {
            tracing::debug!(%prefix, %why, failures = self.failures, "etcd watch: {what}; retrying");
        }
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(RETRY_MAX);
    }
}

/// Feeds `sink` until its consumer goes away (or the store's runtime stops).
pub(super) async fn run(members: Arc<Members>, sink: WatchSink, options: EtcdOptions) {
    let prefix = sink.prefix().to_string();
    let mut backoff = Backoff::new();
    // The first revision not yet delivered; `None`: the consumer needs a reset.
    let mut next: Option<i64> = None;
    while !sink.is_closed() {
        let mut from = match next {
            Some(from) if !sink.needs_reset() => from,
            _ => match list(&members, &prefix, options.request_timeout).await {
                Ok((entries, rev)) => {
                    sink.reset(rev, entries);
                    i64::try_from(rev).unwrap_or(i64::MAX) + 1
                }
                Err(e) => {
                    backoff.failed(&prefix, "listing the prefix failed", &e.to_string()).await;
                    continue;
                }
            },
        };
        let (member, client) = members.current();
        let mut watch = client.watch_client().max_decoding_message_size(WATCH_RESPONSE_BYTES_MAX);
        let end = follow(&mut watch, &sink, &prefix, &mut from, &options, &mut backoff).await;
        next = Some(from);
        match end {
            End::Closed => return,
            End::Reset { why, pause } => {
                tracing::info!(%prefix, %why, "etcd watch: listing the prefix again");
                next = None;
                if pause {
                    backoff.failed(&prefix, "watch canceled", &why).await;
                }
            }
            End::Broken(why) => {
                // Whatever broke it, the next attempt goes to the next member.
                let why = format!("{why} (etcd at {})", members.endpoint(member));
                members.failed(member);
                backoff.failed(&prefix, "stream broke, resuming", &why).await;
            }
        }
    }
}

/// Follows one etcd watch stream from revision `*next`, advancing `*next`
/// past each delivered revision (and past progress reports).
async fn follow(
    watch: &mut etcd_client::WatchClient,
    sink: &WatchSink,
    prefix: &str,
    next: &mut i64,
    options: &EtcdOptions,
    backoff: &mut Backoff,
) -> End {
    let (key, end) = prefix_range(prefix);
    let request = WatchOptions::new().with_range(end).with_start_revision(*next).with_progress_notify();
    let stream = match tokio::time::timeout(options.request_timeout, watch.watch(key, Some(request))).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return End::Broken(format!("opening the watch: {e}")),
        Err(_) => return End::Broken(format!("opening the watch: no answer within {:?}", options.request_timeout)),
    };
    let (mut requests, mut responses) = stream.split();
    let mut last_heard = Instant::now();
    let mut progress_asked: Option<Instant> = None;
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = responses.message() => {
                last_heard = Instant::now();
                progress_asked = None;
                let response = match message {
                    Ok(Some(response)) => response,
                    Ok(None) => return End::Broken("etcd closed the watch stream".into()),
                    Err(e) if is_compacted(&e) => {
                        return End::Reset { why: format!("revision {next} compacted: {e}"), pause: false }
                    }
                    Err(e) if is_response_too_large(&e) => {
                        return End::Reset { why: format!("watch response too large: {e}"), pause: false }
                    }
                    Err(e) => return End::Broken(e.to_string()),
                };
                if let Some(end) = handle(response, sink, next, backoff) {
                    return end;
                }
            }
            _ = poll.tick() => {
                if sink.is_closed() {
                    return End::Closed;
                }
                if sink.needs_reset() {
                    return End::Reset { why: "the consumer fell behind".into(), pause: false };
                }
                match progress_asked {
                    None if last_heard.elapsed() >= options.watch_check_interval => {
                        if let Err(e) = requests.request_progress().await {
                            return End::Broken(format!("asking for progress: {e}"));
                        }
                        progress_asked = Some(Instant::now());
                    }
                    Some(asked) if asked.elapsed() >= options.request_timeout => {
                        return End::Broken(format!(
                            "no progress report from etcd within {:?}", options.request_timeout
                        ));
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Delivers one response's events; `Some` ends the stream.
fn handle(response: WatchResponse, sink: &WatchSink, next: &mut i64, backoff: &mut Backoff) -> Option<End> {
    if response.compact_revision() > 0 {
        return Some(End::Reset {
            why: format!("revision {next} compacted (oldest kept: {})", response.compact_revision()),
            pause: false,
        });
    }
    if response.canceled() {
        // Not a compaction: e.g. a future revision after etcd lost data.
        // Listing again is the only way back to a consistent view.
        return Some(End::Reset { why: format!("etcd canceled the watch: {}", response.cancel_reason()), pause: true });
    }
    if response.created() {
        backoff.reset();
    }
    let events = response.events();
    if events.is_empty() {
        // A progress report: every change up to the header's revision has
        // been sent, so a reconnect may start after it (which also keeps a
        // quiet prefix's resume point ahead of compaction).
        if !response.created() {
            if let Some(header) = response.header() {
                *next = (*next).max(header.revision() + 1);
            }
        }
        return None;
    }
    // etcd never splits a revision across responses (without fragmenting,
    // which is not asked for), and sends revisions in order.
    let mut i = 0;
    while i < events.len() {
        let rev = events[i].kv().map_or(0, |kv| kv.mod_revision());
        let mut changes = Vec::new();
        while i < events.len() && events[i].kv().map_or(0, |kv| kv.mod_revision()) == rev {
            if let Some(event) = watch_event(&events[i]) {
                changes.push(event);
            }
            i += 1;
        }
        if rev < *next {
            // Already delivered (defensive: etcd starts at the asked revision).
            continue;
        }
        if !sink.changes(revision(rev), changes) {
            return Some(End::Reset { why: "the consumer fell behind".into(), pause: false });
        }
        *next = rev + 1;
    }
    None
}

fn watch_event(event: &etcd_client::Event) -> Option<WatchEvent> {
    let kv = event.kv()?;
    let key = super::key_string(kv.key().to_vec());
    Some(match event.event_type() {
        EventType::Put => WatchEvent::Put {
            key,
            value: Versioned {
                value: kv.value().to_vec(),
                version: revision(kv.mod_revision()),
                create_revision: revision(kv.create_revision()),
                lease: kv.lease(),
            },
        },
        EventType::Delete => WatchEvent::Delete { key },
    })
}
