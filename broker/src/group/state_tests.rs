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
        supports_skip_assignment: false,
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

/// A consumer subscription (v1: with user data and owned partitions, as
/// clients send it) naming `topics`, marked with `generation` the way the
/// Java client's v2+ metadata carries one: bytes that change across a restart.
fn subscription(topics: &[&'static str], generation: i32) -> Bytes {
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let mut b = BytesMut::new();
    b.put_i16(1);
    ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|t| StrBytes::from_static_str(t)).collect())
        .with_user_data(Some(Bytes::from(generation.to_be_bytes().to_vec())))
        .encode(&mut b, 1)
        .unwrap();
    b.freeze()
}

fn static_args(member: &str, instance: &str, topics: &[&'static str], generation: i32) -> JoinArgs {
    JoinArgs {
        protocols: vec![("range".into(), subscription(topics, generation))],
        ..args(member, Some(instance), true)
    }
}

/// Two static members, `host-a` leading, stable at generation 2 with
/// assignments "A" and "B". Returns (a's id, b's id).
fn stable_static_pair(g: &mut Group, now: Instant) -> (String, String) {
    let a = done(&mut join(g, static_args("", "host-a", &["t"], -1), now)).member_id;
    sync(g, &a, 1, vec![(a.clone(), Bytes::from_static(b"A"))], now);
    let mut bj = join(g, static_args("", "host-b", &["t"], -1), now);
    let mut aj = join(g, static_args(&a, "host-a", &["t"], 1), now);
    let (b, a2) = (done(&mut bj), done(&mut aj));
    assert_eq!((a2.generation, a2.leader.as_str()), (2, a.as_str()));
    let assign = vec![(a.clone(), Bytes::from_static(b"A")), (b.member_id.clone(), Bytes::from_static(b"B"))];
    sync(g, &b.member_id, 2, vec![], now);
    sync(g, &a, 2, assign, now);
    assert_eq!(g.state(), GroupState::Stable);
    (a, b.member_id)
}

/// KIP-345 for the leader: it restarts (new member id, metadata bytes that
/// differ: the Java client's carry its generation) and gets its assignment
/// back with no rebalance. A v9+ client is told it leads and must not assign
/// (KIP-814); an older one is given the old leader id, so it does not try.
#[test]
fn static_leader_restart_keeps_the_group_stable() {
    for skip in [true, false] {
        let now = Instant::now();
        let mut g = Group::new("g".into(), timing());
        let (a, b) = stable_static_pair(&mut g, now);
        let mut back = static_args("", "host-a", &["t"], -1);
        back.supports_skip_assignment = skip;
        let r = done(&mut join(&mut g, back, now));
        assert_eq!((r.error, r.generation), (errors::NONE, 2));
        assert_eq!(g.state(), GroupState::Stable, "no rebalance");
        assert_eq!(r.skip_assignment, skip);
        if skip {
            assert_eq!(r.leader, r.member_id);
            assert_eq!(r.members.len(), 2);
        } else {
            assert_eq!(r.leader, a, "the old id: the client does not take itself for the leader");
            assert!(r.members.is_empty());
        }
        // Its SyncGroup (with or without an assignment) returns what it had.
        let mine = vec![(r.member_id.clone(), Bytes::from_static(b"new"))];
        let s = sync(&mut g, &r.member_id, 2, mine, now).try_recv().unwrap();
        assert_eq!((s.error, &s.assignment[..]), (errors::NONE, &b"A"[..]));
        // The other member noticed nothing.
        assert_eq!(g.heartbeat(&b, None, 2, now), errors::NONE);
        assert_eq!(&sync(&mut g, &b, 2, vec![], now).try_recv().unwrap().assignment[..], b"B");
        assert_eq!(g.check_member(&a, Some("host-a"), 2), Err(errors::FENCED_INSTANCE_ID));
    }
}

/// A static member that comes back subscribed to other topics needs a new
/// assignment: the group rebalances.
#[test]
fn static_member_back_with_another_subscription_rebalances() {
    let now = Instant::now();
    let mut g = Group::new("g".into(), timing());
    let (_a, b) = stable_static_pair(&mut g, now);
    let mut r = join(&mut g, static_args("", "host-a", &["t", "u"], -1), now);
    assert_eq!(r.try_recv().unwrap_err(), TryRecvError::Empty, "parked until the rebalance completes");
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(g.heartbeat(&b, None, 2, now), errors::REBALANCE_IN_PROGRESS);
}

/// A member that stops heartbeating is removed when its session ends, and
/// the group's timer is told to wake exactly then.
#[test]
fn sessions_end_at_their_deadline_and_the_timer_knows_it() {
    let now = Instant::now();
    let mut g = Group::new("g".into(), timing());
    let (a, b) = stable_static_pair(&mut g, now);
    let later = now + Duration::from_secs(3);
    assert_eq!(g.heartbeat(&b, None, 2, later), errors::NONE);
    let a_ends = now + Duration::from_secs(10);
    assert_eq!(g.next_deadline(), Some(a_ends));
    g.tick(a_ends - Duration::from_millis(1));
    assert_eq!(g.state(), GroupState::Stable);
    g.tick(a_ends);
    assert_eq!(g.state(), GroupState::PreparingRebalance, "a's session ended");
    assert_eq!(g.check_member(&a, None, 2), Err(errors::UNKNOWN_MEMBER_ID));
    // b is told at its next heartbeat; parked in JoinGroup it has no session
    // deadline, only the rebalance's.
    assert_eq!(g.heartbeat(&b, None, 2, a_ends), errors::REBALANCE_IN_PROGRESS);
    let mut bj = join(&mut g, static_args(&b, "host-b", &["t"], 2), a_ends);
    assert_eq!(done(&mut bj).generation, 3);
}

/// A consumer group whose members all left is still a consumer group
/// (ListGroups: "consumer", Empty), until a member of another kind refills it.
#[test]
fn an_emptied_group_keeps_its_protocol_type() {
    let now = Instant::now();
    let mut g = Group::new("g".into(), timing());
    let a = single_member(&mut g, now);
    assert_eq!(g.leave(&a, None, now), errors::NONE);
    assert_eq!((g.state(), g.protocol_type()), (GroupState::Empty, "consumer"));
    assert_eq!(g.describe().protocol_type, "consumer");
    let connect = JoinArgs { protocol_type: "connect".into(), ..args("", None, false) };
    assert_eq!(done(&mut join(&mut g, connect, now)).error, errors::NONE);
    assert_eq!(g.protocol_type(), "connect");
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
    handle(
        &mgr,
        GroupMsg::Slots {
            owned,
            gained: Default::default(),
            offsets: HashMap::new(),
            snapshots: HashMap::new(),
            reply: tx,
        },
    );
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
        mgr.borrow_mut().tick(start + TICK * i, 0);
    }
    let second = join_via_manager(args(&first.member_id, None, true));
    assert_eq!((second.error, second.generation), (errors::NONE, 1));
    assert_eq!(second.leader, first.member_id);
}

fn small(max_members: usize) -> GroupTiming {
    GroupTiming { initial_rebalance_delay: Duration::ZERO, max_members, ..Default::default() }
}

#[test]
fn a_join_past_group_max_size_is_refused_and_members_stay_bounded() {
    let now = Instant::now();
    let mut g = Group::new("g".into(), small(3));
    let a = single_member(&mut g, now);
    // Two more join (each joins a rebalance a's rejoin completes).
    let mut pending = vec![join(&mut g, args("", None, false), now), join(&mut g, args("", None, false), now)];
    let mut aj = join(&mut g, args(&a, None, false), now);
    assert_eq!(done(&mut aj).members.len(), 3);
    for rx in &mut pending {
        assert_eq!(done(rx).error, errors::NONE);
    }
    assert_eq!(g.member_count(), 3);
    // A fourth: refused, however it asks, and it leaves nothing behind.
    for a in [args("", None, false), args("", None, true), args("", Some("static-1"), false)] {
        let r = done(&mut join(&mut g, a, now));
        assert_eq!((r.error, r.member_id.as_str()), (errors::GROUP_MAX_SIZE_REACHED, ""));
    }
    assert_eq!(g.member_count(), 3);
    assert_eq!(g.pending_count(), 0, "no id handed out to a refused member");
    // A known member rejoining is no new member: accepted.
    let mut aj = join(&mut g, args(&a, None, false), now);
    assert_eq!(aj.try_recv().unwrap_err(), TryRecvError::Empty, "a rebalance waits for the others");
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    // Once one leaves there is room again.
    let b = g.describe().members.iter().map(|m| m.member_id.clone()).find(|m| *m != a).unwrap();
    assert_eq!(g.leave(&b, None, now), errors::NONE);
    let r = join(&mut g, args("", None, false), now);
    drop(r);
    assert_eq!(g.member_count(), 3);
}

#[test]
fn a_pending_id_brought_back_to_a_full_group_is_refused() {
    let now = Instant::now();
    let mut g = Group::new("g".into(), small(1));
    let id = done(&mut join(&mut g, args("", None, true), now)).member_id;
    let _a = single_member(&mut g, now);
    let r = done(&mut join(&mut g, args(&id, None, true), now));
    assert_eq!(r.error, errors::GROUP_MAX_SIZE_REACHED);
    assert_eq!((g.member_count(), g.pending_count()), (1, 0));
}

#[test]
fn pending_member_ids_are_bounded_for_a_client_repeating_join_without_an_id() {
    let now = Instant::now();
    let mut g = Group::new("g".into(), small(10));
    let mut ids = Vec::new();
    for i in 0..1000 {
        let r = done(&mut join(&mut g, args("", None, true), now + Duration::from_millis(i)));
        assert_eq!(r.error, errors::MEMBER_ID_REQUIRED);
        ids.push(r.member_id);
        assert!(g.pending_count() <= 10, "{} pending after {i}", g.pending_count());
    }
    // The newest ids are still good; the oldest were forgotten.
    let r = done(&mut join(&mut g, args(&ids[999], None, true), now));
    assert_eq!(r.error, errors::NONE);
    let r = done(&mut join(&mut g, args(&ids[0], None, true), now));
    assert_eq!(r.error, errors::UNKNOWN_MEMBER_ID);
}

/// `offsets.retention.minutes` with KIP-211's rules, on an injected clock:
/// a group without members loses its offsets a retention after its last
/// commit or its last member's departure, whichever is later; a stable
/// consumer group keeps those of topics it subscribes to, whatever their age;
/// expired offsets leave the store too.
#[test]
fn committed_offsets_expire_a_retention_after_the_group_empties_or_the_last_commit() {
    use std::cell::RefCell;
    use std::collections::{BTreeMap, HashMap};
    use std::rc::Rc;
    use std::sync::Arc;

    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use laminar_coord::cluster::{group_slot, Keys};
    use laminar_coord::MetaStore;

    use super::manager::{handle, GroupManager};
    use super::{CommitArgs, Committed, GroupMsg, OffsetWriter};

    const RETENTION_MS: u64 = 600_000;
    const T0: u64 = 1_000_000_000;

    tokio_uring::start(async {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn MetaStore> = Arc::new(laminar_coord::EmbeddedStore::open(dir.path()).unwrap());
        let keys = Keys::new("");
        let mut owned = BTreeMap::new();
        for g in ["simple", "g"] {
            let slot = group_slot(g);
            if let std::collections::btree_map::Entry::Vacant(e) = owned.entry(slot) {
                e.insert(store.put(&keys.coordinator(slot), b"{}".to_vec()).await.unwrap());
            }
        }
        let writer = OffsetWriter::new(store.clone(), keys.clone());
        tokio_uring::spawn(writer.clone().run());
        let timing = GroupTiming {
            initial_rebalance_delay: Duration::ZERO,
            offsets_retention: Duration::from_millis(RETENTION_MS),
            ..Default::default()
        };
        let mgr = Rc::new(RefCell::new(GroupManager::new(timing, writer)));
        let (tx, _rx) = oneshot::channel();
        handle(
            &mgr,
            GroupMsg::Slots {
                owned,
                gained: Default::default(),
                offsets: HashMap::new(),
                snapshots: HashMap::new(),
                reply: tx,
            },
        );

        let commit = |group: &str, member: &str, generation: i32, topic: &str, commit_ms: u64| {
            let (tx, rx) = oneshot::channel();
            let c = Committed { offset: 5, leader_epoch: 0, metadata: None, commit_ms };
            let args = CommitArgs {
                group: group.into(),
                generation,
                member_id: member.into(),
                instance_id: None,
                offsets: vec![(topic.into(), 0, c)],
            };
            handle(&mgr, GroupMsg::Commit { args, reply: tx });
            rx
        };
        let committed = |group: &str| {
            let (tx, mut rx) = oneshot::channel();
            handle(&mgr, GroupMsg::Fetch { group: group.into(), topics: None, reply: tx });
            let rows = rx.try_recv().unwrap().unwrap();
            rows.into_iter().map(|(t, _, _)| t).collect::<Vec<_>>()
        };
        let expire = |now_ms: u64| mgr.borrow_mut().expire_offsets(now_ms);

        // A simple consumer's group (no members ever): from its commit.
        assert_eq!(commit("simple", "", -1, "t", T0).await.unwrap().unwrap()[0].2, errors::NONE);
        // A consumer group whose one member subscribes to "t".
        let mut sub = BytesMut::new();
        sub.put_i16(0);
        ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("t")])
            .encode(&mut sub, 0)
            .unwrap();
        let mut a = args("", None, false);
        a.protocols = vec![("range".into(), sub.freeze())];
        let (tx, mut rx) = oneshot::channel();
        handle(&mgr, GroupMsg::Join { args: a, reply: tx });
        let joined = rx.try_recv().unwrap();
        let member = joined.member_id.clone();
        let (tx, _sync) = oneshot::channel();
        let s = SyncArgs {
            group: "g".into(),
            generation: 1,
            member_id: member.clone(),
            instance_id: None,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignments: vec![(member.clone(), Bytes::new())],
        };
        handle(&mgr, GroupMsg::Sync { args: s, reply: tx });
        for topic in ["t", "unsubscribed"] {
            assert_eq!(commit("g", &member, 1, topic, T0).await.unwrap().unwrap()[0].2, errors::NONE);
        }
        mgr.borrow_mut().tick(Instant::now(), T0);

        assert!(expire(T0 + RETENTION_MS - 1).is_empty(), "nothing before the retention");
        let mut writes = expire(T0 + RETENTION_MS);
        writes.sort_by(|a, b| a.0.cmp(&b.0));
        let summary: Vec<(String, usize)> = writes.iter().map(|(g, n, _)| (g.clone(), *n)).collect();
        assert_eq!(summary, vec![("g".to_string(), 1), ("simple".to_string(), 1)]);
        for (_, _, done) in writes {
            done.await.unwrap().unwrap();
        }
        assert!(committed("simple").is_empty());
        assert_eq!(committed("g"), vec!["t"], "a subscribed topic's offset stays while the group has members");
        assert!(expire(T0 + 10 * RETENTION_MS).is_empty(), "however old");

        // The member leaves at T1: the group is Empty from then on.
        let t1 = T0 + 10 * RETENTION_MS;
        let (tx, _leave) = oneshot::channel();
        handle(&mgr, GroupMsg::Leave { group: "g".into(), members: vec![(member, None)], reply: tx });
        mgr.borrow_mut().tick(Instant::now(), t1);
        assert!(expire(t1 + RETENTION_MS - 1).is_empty(), "counted from the emptying, not the old commit");
        let writes = expire(t1 + RETENTION_MS);
        assert_eq!(writes.len(), 1);
        for (_, _, done) in writes {
            done.await.unwrap().unwrap();
        }
        assert!(committed("g").is_empty());
        assert!(store.list(&keys.offsets()).await.unwrap().is_empty(), "deleted from the store too");
        // With no members, ids or offsets left, the group itself is forgotten.
        mgr.borrow_mut().tick(Instant::now(), t1 + RETENTION_MS);
        let (tx, mut rx) = oneshot::channel();
        handle(&mgr, GroupMsg::List { reply: tx });
        assert!(rx.try_recv().unwrap().is_empty());
    });
}
