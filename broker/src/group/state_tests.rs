//! The group state machine driven by hand: joins, syncs, leaves, expiry,
//! static membership, with time passed in explicitly.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot::{self, error::TryRecvError};

use super::state::{Group, GroupState, GroupTiming};
use super::{JoinArgs, JoinResult, SyncArgs, SyncResult};
use crate::errors;

fn timing() -> GroupTiming {
    GroupTiming { initial_rebalance_delay: Duration::ZERO, ..Default::default() }
}

fn args(member: &str, instance: Option<&str>, require_id: bool) -> JoinArgs {
    JoinArgs {
        group: "g".into(),
        member_id: member.into(),
        instance_id: instance.map(String::from),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
        require_known_member_id: require_id,
    }
}

fn join(g: &mut Group, a: JoinArgs, now: Instant) -> oneshot::Receiver<JoinResult> {
    let (tx, rx) = oneshot::channel();
    g.join(a, now, tx);
    rx
}

fn done(rx: &mut oneshot::Receiver<JoinResult>) -> JoinResult {
    rx.try_recv().expect("join answered")
}

fn sync(
    g: &mut Group,
    member: &str,
    generation: i32,
    assignments: Vec<(String, Bytes)>,
    now: Instant,
) -> oneshot::Receiver<SyncResult> {
    let (tx, rx) = oneshot::channel();
    let a = SyncArgs {
        group: "g".into(),
        generation,
        member_id: member.into(),
        instance_id: None,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        assignments,
    };
    g.sync(a, now, tx);
    rx
}

/// One member joins an empty group and is its leader at generation 1.
fn single_member(g: &mut Group, now: Instant) -> String {
    let r = done(&mut join(g, args("", None, false), now));
    assert_eq!((r.error, r.generation), (errors::NONE, 1));
    assert_eq!(r.leader, r.member_id);
    assert_eq!(r.members.len(), 1);
    r.member_id
}

#[test]
fn member_id_required_then_join() {
    let now = Instant::now();
    let mut g = Group::new("g".into(), timing());
    let r = done(&mut join(&mut g, args("", None, true), now));
    assert_eq!(r.error, errors::MEMBER_ID_REQUIRED);
    assert!(!r.member_id.is_empty());
    let r2 = done(&mut join(&mut g, args(&r.member_id, None, true), now));
    assert_eq!((r2.error, r2.generation, r2.member_id.clone()), (errors::NONE, 1, r.member_id));
    // An id never handed out is unknown.
    let r3 = done(&mut join(&mut g, args("made-up", None, true), now));
    assert_eq!(r3.error, errors::UNKNOWN_MEMBER_ID);
}

#[test]
fn second_member_triggers_rebalance_and_leader_assigns() {
    let now = Instant::now();
    let mut g = Group::new("g".into(), timing());
    let a = single_member(&mut g, now);
    let s = sync(&mut g, &a, 1, vec![(a.clone(), Bytes::from_static(b"all"))], now).try_recv().unwrap();
    assert_eq!((s.error, &s.assignment[..]), (errors::NONE, &b"all"[..]));
    assert_eq!(g.state(), GroupState::Stable);

    let mut b_join = join(&mut g, args("", None, false), now);
    assert_eq!(b_join.try_recv().unwrap_err(), TryRecvError::Empty, "waits for the others");
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(g.heartbeat(&a, None, 1, now), errors::REBALANCE_IN_PROGRESS);
    let mut a_join = join(&mut g, args(&a, None, false), now);
    let (ra, rb) = (done(&mut a_join), done(&mut b_join));
    assert_eq!((ra.generation, rb.generation), (2, 2));
    assert_eq!(ra.leader, a, "the old leader stays leader");
    assert_eq!(ra.members.len(), 2);
    assert!(rb.members.is_empty(), "followers don't see the member list");

    // The follower's sync waits for the leader's.
    let mut sb = sync(&mut g, &rb.member_id, 2, vec![], now);
    assert_eq!(sb.try_recv().unwrap_err(), TryRecvError::Empty);
    let assign = vec![(a.clone(), Bytes::from_static(b"p0")), (rb.member_id.clone(), Bytes::from_static(b"p1"))];
    let sa = sync(&mut g, &a, 2, assign, now).try_recv().unwrap();
    assert_eq!(&sa.assignment[..], b"p0");
    assert_eq!(&sb.try_recv().unwrap().assignment[..], b"p1");
    assert_eq!(g.state(), GroupState::Stable);
    assert_eq!(g.heartbeat(&a, None, 2, now), errors::NONE);
    assert_eq!(g.heartbeat(&a, None, 1, now), errors::ILLEGAL_GENERATION);
    assert_eq!(g.heartbeat("nobody", None, 2, now), errors::UNKNOWN_MEMBER_ID);
}

#[test]
fn leave_and_session_expiry_rebalance_the_rest() {
    let now = Instant::now();
    let mut g = Group::new("g".into(), timing());
    let a = single_member(&mut g, now);
    let mut bj = join(&mut g, args("", None, false), now);
    let mut aj = join(&mut g, args(&a, None, false), now);
    let b = done(&mut bj).member_id;
    done(&mut aj);
    sync(&mut g, &a, 2, vec![], now);
    // b leaves: a must rejoin, then generation 3 has a alone.
    assert_eq!(g.leave(&b, None, now), errors::NONE);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    let r = done(&mut join(&mut g, args(&a, None, false), now));
    assert_eq!((r.generation, r.members.len()), (3, 1));
    sync(&mut g, &a, 3, vec![], now);
    // a stops heartbeating: after its session timeout the group is empty.
    g.tick(now + Duration::from_secs(5));
    assert_eq!(g.state(), GroupState::Stable);
    g.tick(now + Duration::from_secs(11));
    assert_eq!(g.state(), GroupState::Empty);
    assert!(g.is_empty());
}

#[test]
fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
    let now = Instant::now();
    let mut g = Group::new("g".into(), timing());
    let a = single_member(&mut g, now);
    sync(&mut g, &a, 1, vec![], now);
    let mut bj = join(&mut g, args("", None, false), now);
    // a keeps heartbeating but never rejoins.
    for s in 1..30 {
        let t = now + Duration::from_secs(s);
        assert_eq!(g.heartbeat(&a, None, 1, t), errors::REBALANCE_IN_PROGRESS);
        g.tick(t);
    }
    assert_eq!(bj.try_recv().unwrap_err(), TryRecvError::Empty);
    g.tick(now + Duration::from_secs(31));
    let rb = done(&mut bj);
    assert_eq!((rb.error, rb.generation, rb.members.len()), (errors::NONE, 2, 1));
    assert_eq!(rb.leader, rb.member_id);
}

#[test]
fn static_member_restart_keeps_assignment_without_rebalance() {
    let now = Instant::now();
    let mut g = Group::new("g".into(), timing());
    let mut aj = join(&mut g, args("", Some("host-a"), true), now);
    let a = done(&mut aj);
    assert_eq!(a.error, errors::NONE, "static members need no MEMBER_ID_REQUIRED round");
    let mut bj = join(&mut g, args("", Some("host-b"), true), now);
    let mut aj = join(&mut g, args(&a.member_id, Some("host-a"), true), now);
    let (b, a2) = (done(&mut bj), done(&mut aj));
    assert_eq!(a2.generation, 2);
    let assign = vec![(a.member_id.clone(), Bytes::from_static(b"A")), (b.member_id.clone(), Bytes::from_static(b"B"))];
    sync(&mut g, &a.member_id, 2, assign, now);
    sync(&mut g, &b.member_id, 2, vec![], now);
    // b restarts: new member id, same instance, same generation, no rebalance.
    let b2 = done(&mut join(&mut g, args("", Some("host-b"), true), now));
    assert_eq!((b2.error, b2.generation), (errors::NONE, 2));
    assert_ne!(b2.member_id, b.member_id);
    assert_eq!(g.state(), GroupState::Stable);
    let s = sync(&mut g, &b2.member_id, 2, vec![], now).try_recv().unwrap();
    assert_eq!(&s.assignment[..], b"B");
    // The old incarnation is fenced.
    assert_eq!(g.check_member(&b.member_id, Some("host-b"), 2), Err(errors::FENCED_INSTANCE_ID));
    assert_eq!(g.generation(), 2);
}

#[test]
fn inconsistent_protocols_and_bad_session_timeouts_are_refused() {
    let now = Instant::now();
    let mut g = Group::new("g".into(), timing());
    single_member(&mut g, now);
    let mut other = args("", None, false);
    other.protocols = vec![("roundrobin".into(), Bytes::new())];
    assert_eq!(done(&mut join(&mut g, other, now)).error, errors::INCONSISTENT_GROUP_PROTOCOL);
    let mut short = args("", None, false);
    short.session_timeout_ms = 10;
    assert_eq!(done(&mut join(&mut g, short, now)).error, errors::INVALID_SESSION_TIMEOUT);
}

#[test]
fn new_group_waits_for_the_initial_delay() {
    let now = Instant::now();
    let mut g =
        Group::new("g".into(), GroupTiming { initial_rebalance_delay: Duration::from_secs(3), ..Default::default() });
    let mut aj = join(&mut g, args("", None, false), now);
    let mut bj = join(&mut g, args("", None, false), now + Duration::from_secs(1));
    g.tick(now + Duration::from_secs(2));
    assert_eq!(aj.try_recv().unwrap_err(), TryRecvError::Empty);
    g.tick(now + Duration::from_secs(3));
    let (a, b) = (done(&mut aj), done(&mut bj));
    assert_eq!((a.generation, b.generation), (1, 1));
}

#[test]
fn pending_member_id_outlives_slow_round_trips_then_expires() {
    let now = Instant::now();
    let mut g = Group::new("g".into(), timing());
    let pending = done(&mut join(&mut g, args("", None, true), now));
    assert_eq!(pending.error, errors::MEMBER_ID_REQUIRED);
    assert!(!g.is_forgettable(), "a group holding a handed-out id must be kept");
    // The client comes back 400 ms later, after four ticks.
    for ms in [100, 200, 300, 400] {
        g.tick(now + Duration::from_millis(ms));
    }
    let back = now + Duration::from_millis(400);
    let r = done(&mut join(&mut g, args(&pending.member_id, None, true), back));
    assert_eq!((r.error, r.generation), (errors::NONE, 1));

    // An id handed out and never brought back expires with the session timeout it was asked with (10 s).
    let mut g = Group::new("g".into(), timing());
    let lost = done(&mut join(&mut g, args("", None, true), now)).member_id;
    g.tick(now + Duration::from_millis(9_900));
    assert!(!g.is_forgettable());
    g.tick(now + Duration::from_millis(10_001));
    assert!(g.is_forgettable(), "nothing left once the id expired");
    let late = done(&mut join(&mut g, args(&lost, None, true), now + Duration::from_millis(10_002)));
    assert_eq!(late.error, errors::UNKNOWN_MEMBER_ID);
}

/// The shard's 100 ms timer used to forget a group whose only member was
/// pending, so a client more than one tick away never got in.
#[test]
fn manager_tick_keeps_a_group_whose_only_member_is_pending() {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;
    use std::sync::Arc;

    use super::manager::{handle, GroupManager, TICK};
    use super::{GroupMsg, OffsetWriter};

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(laminar_coord::EmbeddedStore::open(dir.path()).unwrap());
    let writer = OffsetWriter::new(store, laminar_coord::cluster::Keys::new(""));
    let mgr = Rc::new(RefCell::new(GroupManager::new(timing(), writer)));
    // This broker coordinates every slot.
    let owned = (0..laminar_coord::cluster::GROUP_SLOTS).map(|s| (s, 1)).collect();
    let (tx, _rx) = oneshot::channel();
    handle(&mgr, GroupMsg::Slots { owned, gained: Default::default(), offsets: HashMap::new(), reply: tx });
    let join_via_manager = |a: JoinArgs| {
        let (tx, mut rx) = oneshot::channel();
        handle(&mgr, GroupMsg::Join { args: a, reply: tx });
        rx.try_recv().expect("join answered")
    };
    let first = join_via_manager(args("", None, true));
    assert_eq!(first.error, errors::MEMBER_ID_REQUIRED);
    // A 400 ms round trip: four ticks pass before the second JoinGroup.
    let start = Instant::now();
    for i in 1..=4 {
        mgr.borrow_mut().tick(start + TICK * i);
    }
    let second = join_via_manager(args(&first.member_id, None, true));
    assert_eq!((second.error, second.generation), (errors::NONE, 1));
    assert_eq!(second.leader, first.member_id);
}
