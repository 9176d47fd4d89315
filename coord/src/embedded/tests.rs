use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::journal::FRAME_HEADER_BYTES;
use crate::snapshot::SNAPSHOT_FILE;
use crate::{KEY_BYTES_MAX, TXN_OPS_MAX, VALUE_BYTES_MAX};

fn small() -> Options {
    Options { compact_min_bytes: 1024 }
}

fn journal_path(dir: &Path) -> PathBuf {
    dir.join(JOURNAL_FILE)
}

fn journal_len(dir: &Path) -> u64 {
    fs::metadata(journal_path(dir)).unwrap().len()
}

/// Offsets where each whole record of the journal ends.
fn record_ends(dir: &Path) -> Vec<u64> {
    let bytes = fs::read(journal_path(dir)).unwrap();
    let mut ends = Vec::new();
    let mut pos = 0;
    while pos + FRAME_HEADER_BYTES <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        pos += FRAME_HEADER_BYTES + len;
        ends.push(pos as u64);
    }
    ends
}

fn append_to_journal(dir: &Path, bytes: &[u8]) {
    fs::OpenOptions::new().append(true).open(journal_path(dir)).unwrap().write_all(bytes).unwrap();
}

fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x5a;
    fs::write(path, bytes).unwrap();
}

fn versioned(value: &[u8], version: u64) -> Option<Versioned> {
    Some(Versioned::new(value.to_vec(), version))
}

/// Three puts k1..k3 at revisions 1..3.
async fn three_puts(dir: &Path) {
    let store = EmbeddedStore::open(dir).unwrap();
    for i in 1..=3 {
        assert_eq!(store.put(&format!("k{i}"), format!("v{i}").into_bytes()).await.unwrap(), i);
    }
}

#[tokio::test]
async fn put_get_and_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.get("a").await.unwrap(), None);
    assert_eq!(store.put("a", b"1".to_vec()).await.unwrap(), 1);
    assert_eq!(store.put("b", b"2".to_vec()).await.unwrap(), 2);
    assert_eq!(store.put("a", b"3".to_vec()).await.unwrap(), 3);
    let a = store.get("a").await.unwrap().unwrap();
    assert_eq!((a.value.as_slice(), a.version, a.create_revision), (&b"3"[..], 3, 1), "created at 1, written at 3");
    assert_eq!(store.get("b").await.unwrap(), versioned(b"2", 2));
    assert_eq!(store.put("empty", Vec::new()).await.unwrap(), 4);
    assert_eq!(store.get("empty").await.unwrap(), versioned(b"", 4));
}

#[tokio::test]
async fn list_returns_the_prefix_sorted() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    for key in ["t/b", "t/a", "t0", "s", "t/"] {
        store.put(key, key.as_bytes().to_vec()).await.unwrap();
    }
    let keys = |list: Vec<(String, Versioned)>| list.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(keys(store.list("t/").await.unwrap()), ["t/", "t/a", "t/b"]);
    assert_eq!(keys(store.list("").await.unwrap()), ["s", "t/", "t/a", "t/b", "t0"]);
    assert!(store.list("u").await.unwrap().is_empty());
    let listed = store.list("t/a").await.unwrap();
    assert_eq!(listed, vec![("t/a".to_string(), Versioned::new(b"t/a".to_vec(), 2))]);
}

#[tokio::test]
async fn delete_reports_existence_and_missing_keys_take_no_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    store.put("a", b"1".to_vec()).await.unwrap();
    assert!(!store.delete("missing").await.unwrap());
    assert!(store.delete("a").await.unwrap());
    assert_eq!(store.get("a").await.unwrap(), None);
    assert!(!store.delete("a").await.unwrap());
    // put (1), delete (2); the misses wrote nothing.
    assert_eq!(store.put("b", b"2".to_vec()).await.unwrap(), 3);
    assert_eq!(record_ends(dir.path()).len(), 3);
}

#[tokio::test]
async fn delete_prefix_removes_only_the_prefix_in_one_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    for key in ["g/1", "g/2", "g/3", "g0", "h/1"] {
        store.put(key, b"x".to_vec()).await.unwrap();
    }
    assert_eq!(store.delete_prefix("g/").await.unwrap(), 3);
    assert_eq!(store.delete_prefix("g/").await.unwrap(), 0);
    let left: Vec<String> = store.list("").await.unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(left, ["g0", "h/1"]);
    // Five puts, one prefix delete; the empty one took no revision.
    assert_eq!(store.put("z", b"z".to_vec()).await.unwrap(), 7);
}

#[tokio::test]
async fn txn_applies_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    store.put("a", b"1".to_vec()).await.unwrap();

    let applied = store
        .txn(
            vec![Compare::version("a", 1), Compare::absent("b")],
            vec![Op::put("b", "2"), Op::put("c", "3"), Op::delete("a")],
        )
        .await
        .unwrap()
        .applied;
    assert!(applied);
    assert_eq!(store.get("a").await.unwrap(), None);
    assert_eq!(store.get("b").await.unwrap(), versioned(b"2", 2));
    assert_eq!(store.get("c").await.unwrap(), versioned(b"3", 2), "one txn, one revision");

    // One failing compare among holding ones: nothing applies, no revision used.
    let applied = store
        .txn(vec![Compare::version("b", 2), Compare::version("c", 999)], vec![Op::put("x", "x")])
        .await
        .unwrap()
        .applied;
    assert!(!applied);
    assert_eq!(store.get("x").await.unwrap(), None);
    assert!(!store.txn(vec![Compare::absent("b")], vec![Op::delete("b")]).await.unwrap().applied);
    assert!(!store.txn(vec![Compare::version("a", 1)], vec![]).await.unwrap().applied, "a was deleted");
    assert_eq!(store.get("b").await.unwrap(), versioned(b"2", 2));

    // Version 0 means "must not exist".
    assert!(store.txn(vec![Compare::version("n", 0)], vec![Op::put("n", "n")]).await.unwrap().applied);
    assert_eq!(store.get("n").await.unwrap(), versioned(b"n", 3));
    assert!(!store.txn(vec![Compare::version("n", 0)], vec![Op::put("n", "again")]).await.unwrap().applied);

    assert!(store.txn(vec![], vec![]).await.unwrap().applied);
    // Ops apply in order.
    assert!(store.txn(vec![], vec![Op::put("p", "1"), Op::delete("p")]).await.unwrap().applied);
    assert_eq!(store.get("p").await.unwrap(), None);
    assert!(store.txn(vec![], vec![Op::delete("q"), Op::put("q", "1")]).await.unwrap().applied);
    assert_eq!(store.get("q").await.unwrap(), versioned(b"1", 5));
}

#[tokio::test]
async fn concurrent_compare_and_swap_through_dyn() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for _ in 0..5 {
                    loop {
                        let current = store.get("counter").await.unwrap();
                        let (n, version) = current
                            .map_or((0u64, 0), |v| (String::from_utf8(v.value).unwrap().parse().unwrap(), v.version));
                        let next = (n + 1).to_string();
                        if store
                            .txn(vec![Compare::version("counter", version)], vec![Op::put("counter", next)])
                            .await
                            .unwrap()
                            .applied
                        {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let counter = store.get("counter").await.unwrap().unwrap();
    assert_eq!(counter.value, b"40");
    assert_eq!(counter.version, 40, "only successful swaps take a revision");
}

#[test]
fn works_outside_a_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut put = store.put("k", b"v".to_vec());
    assert!(matches!(put.as_mut().poll(&mut cx), std::task::Poll::Ready(Ok(1))));
    let mut get = store.get("k");
    assert!(matches!(get.as_mut().poll(&mut cx), std::task::Poll::Ready(Ok(Some(_)))));
}

#[tokio::test]
async fn reopen_preserves_values_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        for i in 0..10 {
            store.put(&format!("k/{i}"), vec![i as u8; i * 10]).await.unwrap();
        }
        store.put("k/3", b"again".to_vec()).await.unwrap();
        store.delete("k/4").await.unwrap();
        store.delete_prefix("k/8").await.unwrap();
        store.txn(vec![Compare::absent("t")], vec![Op::put("t", "t"), Op::delete("k/0")]).await.unwrap();
        store.list("").await.unwrap()
    };
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.list("").await.unwrap(), before);
    let report = store.recovery();
    assert_eq!((report.records_replayed, report.revision, report.keys), (14, 14, before.len()));
    assert_eq!((report.snapshot_revision, report.torn_bytes_truncated), (0, 0));
    assert_eq!(store.put("next", Vec::new()).await.unwrap(), 15);
}

#[tokio::test]
async fn torn_tail_is_truncated_to_the_last_whole_record() {
    let dir = tempfile::tempdir().unwrap();
    three_puts(dir.path()).await;
    let ends = record_ends(dir.path());
    let file = fs::OpenOptions::new().write(true).open(journal_path(dir.path())).unwrap();
    file.set_len(ends[2] - 3).unwrap();
    drop(file);

    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.recovery().torn_bytes_truncated, ends[2] - 3 - ends[1]);
    assert_eq!(journal_len(dir.path()), ends[1]);
    assert_eq!(store.get("k2").await.unwrap(), versioned(b"v2", 2));
    assert_eq!(store.get("k3").await.unwrap(), None);
    // The unacknowledged revision 3 is free again; the journal stays well formed.
    assert_eq!(store.put("k4", b"v4".to_vec()).await.unwrap(), 3);
    drop(store);
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.get("k4").await.unwrap(), versioned(b"v4", 3));
    assert_eq!(store.recovery().torn_bytes_truncated, 0);
}

#[tokio::test]
async fn garbage_after_the_last_record_is_truncated() {
    let mut noise = Vec::new();
    let mut x: u32 = 0x1234_5678;
    for _ in 0..300 {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        noise.push((x >> 24) as u8);
    }
    // A header that fits the file but whose checksum does not match.
    let mut bad_crc = crate::journal::frame(&crate::codec::encode_txn(3, &[JournalOp::Delete { key: "k".into() }]));
    bad_crc[5] ^= 1;
    let mut huge_len = vec![0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4];
    huge_len.extend_from_slice(&[9; 40]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("short header", vec![0xab; 5]),
        ("noise", noise),
        ("zero fill", vec![0; 4096]),
        ("bad checksum", bad_crc),
        ("impossible length", huge_len),
    ];
    for (name, garbage) in cases {
        let dir = tempfile::tempdir().unwrap();
        three_puts(dir.path()).await;
        let clean_len = journal_len(dir.path());
        append_to_journal(dir.path(), &garbage);

        let store = EmbeddedStore::open(dir.path()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(store.recovery().torn_bytes_truncated, garbage.len() as u64, "{name}");
        assert_eq!(journal_len(dir.path()), clean_len, "{name}");
        assert_eq!(store.get("k3").await.unwrap(), versioned(b"v3", 3), "{name}");
        assert_eq!(store.put("k4", Vec::new()).await.unwrap(), 4, "{name}");
    }
}

#[tokio::test]
async fn checksum_damage_in_the_last_record_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    three_puts(dir.path()).await;
    let ends = record_ends(dir.path());
    flip_byte(&journal_path(dir.path()), ends[2] - 1);
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.recovery().torn_bytes_truncated, ends[2] - ends[1]);
    assert_eq!(store.get("k2").await.unwrap(), versioned(b"v2", 2));
    assert_eq!(store.get("k3").await.unwrap(), None);
}

#[tokio::test]
async fn damage_before_valid_records_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    three_puts(dir.path()).await;
    let ends = record_ends(dir.path());
    let original = fs::read(journal_path(dir.path())).unwrap();

    // A flipped payload byte in the first record.
    flip_byte(&journal_path(dir.path()), FRAME_HEADER_BYTES as u64 + 2);
    let damaged = fs::read(journal_path(dir.path())).unwrap();
    let err = EmbeddedStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, CoordError::Corrupt { offset: 0, .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("corrupt") && message.contains("journal"), "{message}");
    assert_eq!(fs::read(journal_path(dir.path())).unwrap(), damaged, "nothing truncated");

    // A length field in the middle turned huge: looks torn, but records follow.
    let mut bytes = original.clone();
    bytes[ends[0] as usize..ends[0] as usize + 4].copy_from_slice(&0x00ff_ffffu32.to_le_bytes());
    fs::write(journal_path(dir.path()), &bytes).unwrap();
    let err = EmbeddedStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, CoordError::Corrupt { offset, .. } if offset == ends[0]), "{err}");
}

#[tokio::test]
async fn compaction_keeps_the_journal_bounded_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let store = EmbeddedStore::open_with(dir.path(), small()).unwrap();
        for i in 0..200u64 {
            store.put(&format!("key/{}", i % 5), vec![i as u8; 50]).await.unwrap();
            // Threshold: max(1024, 4 × live), live = 5 × (32 + 5 + 50) bytes at most.
            assert!(journal_len(dir.path()) <= 4 * 435, "journal not compacted at write {i}");
        }
        store.delete("key/0").await.unwrap();
        store.list("").await.unwrap()
    };
    assert!(dir.path().join(SNAPSHOT_FILE).exists());
    let store = EmbeddedStore::open_with(dir.path(), small()).unwrap();
    let report = store.recovery().clone();
    assert!(report.snapshot_revision > 150, "{report:?}");
    assert_eq!(report.revision, 201);
    assert_eq!(report.records_replayed, 201 - report.snapshot_revision);
    assert_eq!(store.list("").await.unwrap(), before);
    let k4 = store.get("key/4").await.unwrap().unwrap();
    assert_eq!((k4.value, k4.version), (vec![199; 50], 200));
    assert_eq!(store.put("after", Vec::new()).await.unwrap(), 202);
}

/// Writes until a compaction has written a snapshot, with the journal reset failing
/// as a crash right after the snapshot rename would leave it.
async fn compact_but_crash_before_journal_reset(store: &EmbeddedStore, dir: &Path) -> u64 {
    store.fail_next_journal_reset();
    let mut revision = 0;
    while !dir.join(SNAPSHOT_FILE).exists() {
        revision = store.put(&format!("k/{}", revision % 3), vec![7; 40]).await.unwrap();
        assert!(revision < 1000, "compaction never ran");
    }
    revision
}

#[tokio::test]
async fn crash_between_snapshot_and_journal_reset_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (revision, before) = {
        let store = EmbeddedStore::open_with(dir.path(), small()).unwrap();
        let revision = compact_but_crash_before_journal_reset(&store, dir.path()).await;
        (revision, store.list("").await.unwrap())
    };
    // Snapshot at the last revision, and the old journal holding all records.
    assert_eq!(record_ends(dir.path()).len() as u64, revision);

    let store = EmbeddedStore::open_with(dir.path(), small()).unwrap();
    let report = store.recovery().clone();
    assert_eq!(report.snapshot_revision, revision);
    assert_eq!((report.records_skipped, report.records_replayed), (revision, 0));
    assert_eq!(store.list("").await.unwrap(), before);
    // Opening compacted again, replacing the long journal of skipped records.
    assert_eq!(journal_len(dir.path()), 0);
    assert_eq!(store.put("next", Vec::new()).await.unwrap(), revision + 1);
    drop(store);
    let store = EmbeddedStore::open_with(dir.path(), small()).unwrap();
    assert_eq!(store.get("next").await.unwrap(), versioned(b"", revision + 1));
}

#[tokio::test]
async fn writes_after_a_failed_journal_reset_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let store = EmbeddedStore::open_with(dir.path(), small()).unwrap();
        let revision = compact_but_crash_before_journal_reset(&store, dir.path()).await;
        // These land in the old journal, after records the snapshot already holds.
        for i in 1..=3 {
            assert_eq!(store.put(&format!("late/{i}"), b"x".to_vec()).await.unwrap(), revision + i);
        }
        store.list("").await.unwrap()
    };
    let store = EmbeddedStore::open_with(dir.path(), Options { compact_min_bytes: 1 << 20 }).unwrap();
    let report = store.recovery().clone();
    assert_eq!(report.records_replayed, 3, "{report:?}");
    assert_eq!(report.records_skipped, report.snapshot_revision);
    assert_eq!(store.list("").await.unwrap(), before);
}

#[tokio::test]
async fn damaged_snapshot_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EmbeddedStore::open_with(dir.path(), small()).unwrap();
        for i in 0..100u64 {
            store.put(&format!("k/{}", i % 3), vec![1; 40]).await.unwrap();
        }
    }
    let snapshot = dir.path().join(SNAPSHOT_FILE);
    let len = fs::metadata(&snapshot).unwrap().len();
    flip_byte(&snapshot, len - 1);
    let err = EmbeddedStore::open_with(dir.path(), small()).unwrap_err();
    assert!(matches!(err, CoordError::Corrupt { .. }) && err.to_string().contains("snapshot"), "{err}");
    // Restoring the byte makes it whole again.
    flip_byte(&snapshot, len - 1);
    EmbeddedStore::open_with(dir.path(), small()).unwrap();
    // A journal removed by hand beside a snapshot is refused, not recreated empty.
    fs::remove_file(journal_path(dir.path())).unwrap();
    let err = EmbeddedStore::open_with(dir.path(), small()).unwrap_err();
    assert!(err.to_string().contains("journal is missing"), "{err}");
}

#[tokio::test]
async fn leftover_temporary_files_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    three_puts(dir.path()).await;
    fs::write(dir.path().join(SNAPSHOT_TMP), b"half a snapshot").unwrap();
    fs::write(dir.path().join(JOURNAL_TMP), b"junk").unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.get("k3").await.unwrap(), versioned(b"v3", 3));
    assert!(!dir.path().join(SNAPSHOT_TMP).exists() && !dir.path().join(JOURNAL_TMP).exists());
}

#[test]
fn second_open_of_a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = EmbeddedStore::open(dir.path()).unwrap();
    let err = EmbeddedStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, CoordError::Locked { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("in use by another process"), "{message}");
    assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
    drop(first);
    EmbeddedStore::open(dir.path()).unwrap();
}

#[tokio::test]
async fn oversize_and_invalid_requests_are_rejected_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let long_key = "k".repeat(KEY_BYTES_MAX + 1);
    fn too_large<T>(result: Result<T, CoordError>) -> bool {
        matches!(result, Err(CoordError::TooLarge { .. }))
    }
    assert!(too_large(store.put(&long_key, Vec::new()).await));
    assert!(too_large(store.get(&long_key).await));
    assert!(too_large(store.list(&long_key).await));
    assert!(too_large(store.put("k", vec![0; VALUE_BYTES_MAX + 1]).await));
    assert!(too_large(store.txn(vec![], vec![Op::put("k", vec![0; VALUE_BYTES_MAX + 1])]).await));
    assert!(too_large(store.txn(vec![Compare::absent(long_key.clone())], vec![]).await));
    assert!(too_large(store.txn(vec![], vec![Op::delete("k"); TXN_OPS_MAX + 1]).await));
    // 20 puts of 1 MiB exceed the 16 MiB txn bound.
    assert!(too_large(store.txn(vec![], vec![Op::put("k", vec![0; VALUE_BYTES_MAX]); 20]).await));
    let err = store.put("", Vec::new()).await.unwrap_err();
    assert!(matches!(err, CoordError::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("empty"), "{err}");
    assert!(store.txn(vec![], vec![Op::delete("")]).await.is_err());
    assert_eq!(journal_len(dir.path()), 0, "nothing was written");

    // Exactly at the limits is fine.
    let key = "k".repeat(KEY_BYTES_MAX);
    assert_eq!(store.put(&key, vec![1; VALUE_BYTES_MAX]).await.unwrap(), 1);
    drop(store);
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.get(&key).await.unwrap().unwrap().value.len(), VALUE_BYTES_MAX);
}

#[tokio::test]
async fn a_failed_append_that_cannot_be_undone_stops_writes_until_reopen() {
    let dir = tempfile::tempdir().unwrap();
    three_puts(dir.path()).await;
    let store = EmbeddedStore::open(dir.path()).unwrap();
    // A read-only handle makes both the append and its undo fail.
    store.inner.writer.lock().unwrap().journal = fs::File::open(journal_path(dir.path())).unwrap();

    let err = store.put("k4", b"v4".to_vec()).await.unwrap_err();
    assert!(matches!(err, CoordError::Io { .. }), "{err}");
    let err = store.put("k5", b"v5".to_vec()).await.unwrap_err();
    assert!(matches!(err, CoordError::Failed(_)) && err.to_string().contains("restart"), "{err}");
    assert_eq!(store.get("k4").await.unwrap(), None, "a failed write is not visible");
    assert_eq!(store.get("k3").await.unwrap(), versioned(b"v3", 3), "reads still work");
    drop(store);

    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.put("k4", b"v4".to_vec()).await.unwrap(), 4);
}

/// The store contract every `MetaStore` meets (`conformance.rs`; etcd runs the same).
#[tokio::test]
async fn meets_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    crate::conformance::run_all(&store, "/conformance/").await;
}

#[tokio::test]
async fn leased_keys_do_not_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let lease = store.lease_grant(std::time::Duration::from_secs(60)).await.unwrap();
        store.txn(vec![], vec![Op::put_leased("broker/1", "me", lease.id), Op::put("topic", "t")]).await.unwrap();
    }
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.recovery().leased_keys_deleted, 1);
    assert_eq!(store.get("broker/1").await.unwrap(), None);
    assert!(store.get("topic").await.unwrap().is_some());
}
