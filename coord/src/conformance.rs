//! The [`MetaStore`] contract as executable checks, run against every
//! implementation (the embedded store in this crate's unit tests, etcd in
//! `coord/tests/etcd.rs`), so the broker never has to ask which store it has.
//! Each check takes a store and a key prefix of its own, so checks can share
//! one etcd.

use std::time::Duration;

use crate::{Compare, CoordError, MetaStore, Op, WatchEvent, WatchItem, WatchStream, TXN_OPS_MAX};

/// Every check, in order; `prefix` must be unused.
pub async fn run_all(store: &dyn MetaStore, prefix: &str) {
    revisions_and_versions(store, &format!("{prefix}rv/")).await;
    txn_compares(store, &format!("{prefix}txn/")).await;
    delete_prefix(store, &format!("{prefix}dp/")).await;
    limits(store, &format!("{prefix}lim/")).await;
    watch_delivers_state_then_changes(store, &format!("{prefix}w/")).await;
    leases(store, &format!("{prefix}lease/")).await;
    lease_expiry(store, &format!("{prefix}exp/")).await;
}

async fn next(w: &mut WatchStream) -> WatchItem {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("watch delivered nothing within 10 s")
        .expect("watch ended")
}

pub async fn revisions_and_versions(store: &dyn MetaStore, p: &str) {
    let k = format!("{p}a");
    assert_eq!(store.get(&k).await.unwrap(), None);
    let r1 = store.put(&k, b"1".to_vec()).await.unwrap();
    let r2 = store.put(&format!("{p}b"), b"2".to_vec()).await.unwrap();
    let r3 = store.put(&k, b"3".to_vec()).await.unwrap();
    assert!(r1 < r2 && r2 < r3, "revisions grow: {r1} {r2} {r3}");
    let a = store.get(&k).await.unwrap().unwrap();
    assert_eq!((a.value.as_slice(), a.version, a.create_revision, a.lease), (&b"3"[..], r3, r1, 0));
    let (listed, rev) = store.list_with_revision(p).await.unwrap();
    assert_eq!(listed.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), vec![k.as_str(), &format!("{p}b")]);
    assert!(rev >= r3);
    assert!(store.delete(&k).await.unwrap());
    assert!(!store.delete(&k).await.unwrap(), "second delete finds nothing");
    let r4 = store.put(&k, b"again".to_vec()).await.unwrap();
    assert_eq!(store.get(&k).await.unwrap().unwrap().create_revision, r4, "a new incarnation");
}

pub async fn txn_compares(store: &dyn MetaStore, p: &str) {
    let (a, b) = (format!("{p}a"), format!("{p}b"));
    let created = store.put(&a, b"x".to_vec()).await.unwrap();
    let r = store.txn(vec![Compare::absent(&b), Compare::version(&a, created)], vec![Op::put(&b, "y")]).await.unwrap();
    assert!(r.applied && r.revision > created);
    let r2 = store.txn(vec![Compare::absent(&b)], vec![Op::delete(&a)]).await.unwrap();
    assert!(!r2.applied, "b exists now");
    assert!(store.get(&a).await.unwrap().is_some(), "a failed txn applies nothing");
    // Created: survives overwrites, not a delete and re-create.
    store.put(&a, b"overwritten".to_vec()).await.unwrap();
    assert!(store.txn(vec![Compare::created(&a, created)], vec![]).await.unwrap().applied);
    store.delete(&a).await.unwrap();
    assert!(!store.txn(vec![Compare::created(&a, created)], vec![]).await.unwrap().applied, "deleted");
    store.put(&a, b"reborn".to_vec()).await.unwrap();
    assert!(!store.txn(vec![Compare::created(&a, created)], vec![]).await.unwrap().applied, "another incarnation");
    // Version 0 means absent.
    assert!(store.txn(vec![Compare::version(format!("{p}none"), 0)], vec![]).await.unwrap().applied);
    // All ops of a txn share one revision.
    let r = store.txn(vec![], vec![Op::put(format!("{p}c"), "1"), Op::put(format!("{p}d"), "2")]).await.unwrap();
    let c = store.get(&format!("{p}c")).await.unwrap().unwrap();
    let d = store.get(&format!("{p}d")).await.unwrap().unwrap();
    assert_eq!((c.version, d.version), (r.revision, r.revision));
}

pub async fn delete_prefix(store: &dyn MetaStore, p: &str) {
    for k in ["x/1", "x/2", "x/3", "y"] {
        store.put(&format!("{p}{k}"), b"v".to_vec()).await.unwrap();
    }
    let r = store.txn(vec![Compare::version(format!("{p}y"), 0)], vec![Op::delete_prefix(format!("{p}x/"))]).await;
    assert!(!r.unwrap().applied);
    let r = store.txn(vec![], vec![Op::delete_prefix(format!("{p}x/")), Op::put(format!("{p}z"), "1")]).await;
    assert!(r.unwrap().applied);
    let keys: Vec<String> = store.list(p).await.unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec![format!("{p}y"), format!("{p}z")]);
    assert_eq!(store.delete_prefix(p).await.unwrap(), 2);
}

pub async fn limits(store: &dyn MetaStore, p: &str) {
    let too_many = vec![Op::put(format!("{p}k"), "v"); TXN_OPS_MAX + 1];
    assert!(matches!(store.txn(vec![], too_many).await, Err(CoordError::TooLarge { .. })));
    let ok = (0..TXN_OPS_MAX).map(|i| Op::put(format!("{p}k{i}"), "v")).collect();
    assert!(store.txn(vec![], ok).await.unwrap().applied, "{TXN_OPS_MAX} ops fit");
    assert!(store.get("").await.is_err(), "empty key");
}

pub async fn watch_delivers_state_then_changes(store: &dyn MetaStore, p: &str) {
    let before = store.put(&format!("{p}old"), b"o".to_vec()).await.unwrap();
    store.put(&format!("{p}-sibling"), b"not mine".to_vec()).await.unwrap();
    let mut w = store.watch(&format!("{p}w/"));
    store.put(&format!("{p}w/old"), b"o".to_vec()).await.unwrap();
    // The first item is the whole prefix; a write racing the watch's start is
    // either in it or after it, never lost.
    let seen_old = match next(&mut w).await {
        WatchItem::Reset { revision, entries } => {
            assert!(revision >= before);
            entries.iter().any(|(k, _)| k.ends_with("w/old"))
        }
        other => panic!("first item must be a reset, got {other:?}"),
    };
    if !seen_old {
        match next(&mut w).await {
            WatchItem::Changes { events, .. } => assert!(events[0].key().ends_with("w/old")),
            other => panic!("{other:?}"),
        }
    }
    let r = store
        .txn(
            vec![],
            vec![Op::put(format!("{p}w/a"), "1"), Op::put(format!("{p}w/b"), "2"), Op::put(format!("{p}x"), "3")],
        )
        .await
        .unwrap();
    match next(&mut w).await {
        WatchItem::Changes { revision, events } => {
            assert_eq!(revision, r.revision);
            let keys: Vec<&str> = events.iter().map(|e| e.key()).collect();
            assert_eq!(keys, vec![format!("{p}w/a"), format!("{p}w/b")], "one item per txn, prefix only");
            assert!(
                matches!(&events[0], WatchEvent::Put { value, .. } if value.value == b"1" && value.version == r.revision)
            );
        }
        other => panic!("{other:?}"),
    }
    let r = store.txn(vec![], vec![Op::delete_prefix(format!("{p}w/"))]).await.unwrap();
    match next(&mut w).await {
        WatchItem::Changes { revision, events } => {
            assert_eq!(revision, r.revision);
            assert_eq!(events.len(), 3, "{events:?}");
            assert!(events.iter().all(|e| matches!(e, WatchEvent::Delete { .. })));
        }
        other => panic!("{other:?}"),
    }
}

pub async fn leases(store: &dyn MetaStore, p: &str) {
    let lease = store.lease_grant(Duration::from_secs(5)).await.unwrap();
    assert!(lease.id != 0 && lease.ttl >= Duration::from_secs(1));
    let k = format!("{p}member");
    let mut w = store.watch(p);
    assert!(matches!(next(&mut w).await, WatchItem::Reset { .. }));
    assert!(store.txn(vec![Compare::absent(&k)], vec![Op::put_leased(&k, "me", lease.id)]).await.unwrap().applied);
    assert_eq!(store.get(&k).await.unwrap().unwrap().lease, lease.id);
    assert!(matches!(next(&mut w).await, WatchItem::Changes { .. }));
    let ttl = store.lease_keep_alive(lease.id).await.unwrap();
    assert!(ttl.is_some_and(|t| t >= Duration::from_secs(1)), "{ttl:?}");
    store.lease_revoke(lease.id).await.unwrap();
    assert_eq!(store.get(&k).await.unwrap(), None, "revoking deletes the lease's keys");
    match next(&mut w).await {
        WatchItem::Changes { events, .. } => assert!(matches!(&events[0], WatchEvent::Delete { key } if *key == k)),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.lease_keep_alive(lease.id).await.unwrap(), None, "revoked");
    store.lease_revoke(lease.id).await.unwrap();
    let r = store.txn(vec![], vec![Op::put_leased(&k, "late", lease.id)]).await;
    assert!(matches!(r, Err(CoordError::LeaseNotFound(id)) if id == lease.id), "{r:?}");
}

pub async fn lease_expiry(store: &dyn MetaStore, p: &str) {
    let lease = store.lease_grant(Duration::from_secs(1)).await.unwrap();
    let k = format!("{p}ephemeral");
    store.txn(vec![], vec![Op::put_leased(&k, "v", lease.id)]).await.unwrap();
    // Not kept alive: gone within the granted TTL plus the store's own slack
    // (etcd checks expiry every 500 ms and may have raised the TTL).
    let deadline = tokio::time::Instant::now() + lease.ttl + Duration::from_secs(5);
    loop {
        // A write drives expiry in the embedded store; etcd expires on its own.
        store.put(&format!("{p}tick"), b"t".to_vec()).await.unwrap();
        if store.get(&k).await.unwrap().is_none() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "lease key outlived its TTL ({:?})", lease.ttl);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(store.lease_keep_alive(lease.id).await.unwrap(), None);
}
