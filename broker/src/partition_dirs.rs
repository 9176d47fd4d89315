//! Partition directories in the data directory: `<topic>-<partition>`, each
//! holding a `partition.metadata` file with the topic's id (Kafka's file, and
//! format, since KIP-516). The id is what keeps a topic deleted and created
//! again under the same name from reading the old one's data: a directory
//! whose id is not the topic's is the old topic's, and it goes before the new
//! log opens. Directories nobody assigns to this broker any more (deleted
//! while it was down, moved away) are swept at start.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use laminar_engine::log::{remove_log_dir, DELETED_DIR_SUFFIX};

pub const METADATA_FILE: &str = "partition.metadata";

pub fn path(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// (topic, partition) of a directory name, if it is one.
pub fn parse(name: &str) -> Option<(String, i32)> {
    let (topic, p) = name.rsplit_once('-')?;
    let p: i32 = p.parse().ok().filter(|p| *p >= 0)?;
    crate::topic_name::validate(topic).ok()?;
    Some((topic.to_string(), p))
}

fn read_id(dir: &Path) -> io::Result<Option<uuid::Uuid>> {
    match fs::read_to_string(dir.join(METADATA_FILE)) {
        Ok(text) => Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("topic_id:"))
            .and_then(|id| uuid::Uuid::parse_str(id.trim()).ok())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn write_id(dir: &Path, id: uuid::Uuid) -> io::Result<()> {
    let tmp = dir.join(format!("{METADATA_FILE}.tmp"));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(format!("version: 0\ntopic_id: {id}\n").as_bytes())?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join(METADATA_FILE))?;
    fs::File::open(dir)?.sync_all()
}

/// Makes `dir` the directory of topic `id`'s partition: an existing directory
/// of another topic id is removed first; one without an id (written by a
/// build before ids) is adopted; a missing one is created, durably.
/// Blocking: call it on a blocking thread.
pub fn prepare(dir: &Path, id: uuid::Uuid) -> Result<(), String> {
    let ctx = |what: &str, e: io::Error| format!("{what} {}: {e}", dir.display());
    if dir.exists() {
        match read_id(dir).map_err(|e| ctx("reading the topic id of", e))? {
            Some(found) if found == id => return Ok(()),
            Some(found) => {
                tracing::info!(dir = %dir.display(), old_topic_id = %found, "removing a deleted topic's leftover partition");
                remove_log_dir(dir).map_err(|e| ctx("removing", e))?;
            }
            None => return write_id(dir, id).map_err(|e| ctx("writing the topic id of", e)),
        }
    }
    fs::create_dir_all(dir).map_err(|e| ctx("creating", e))?;
    if let Some(parent) = dir.parent() {
        fs::File::open(parent).and_then(|f| f.sync_all()).map_err(|e| ctx("syncing the parent of", e))?;
    }
    write_id(dir, id).map_err(|e| ctx("writing the topic id of", e))
}

/// Removes partition directories of `data_dir` that this broker does not
/// hold (`keep`: topic, partition) and leftovers of interrupted removals.
/// Returns what it removed.
pub fn sweep(data_dir: &Path, keep: &HashSet<(String, i32)>) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for entry in fs::read_dir(data_dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().to_string();
        let path = entry.path();
        if name.ends_with(DELETED_DIR_SUFFIX) {
            fs::remove_dir_all(&path)?;
            removed.push(path);
            continue;
        }
        let Some(tp) = parse(&name) else { continue };
        if !keep.contains(&tp) {
            remove_log_dir(&path)?;
            removed.push(path);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_only_as_partitions() {
        assert_eq!(parse("orders-3"), Some(("orders".into(), 3)));
        assert_eq!(parse("a-b-c-12"), Some(("a-b-c".into(), 12)));
        assert_eq!(parse("meta"), None);
        assert_eq!(parse("x-"), None);
        assert_eq!(parse("x--1"), Some(("x-".into(), 1)));
        assert_eq!(parse("x-1a"), None);
        assert_eq!(parse("bad name-1"), None);
    }

    #[test]
    fn a_recreated_topic_never_opens_the_old_ones_data() {
        let data = tempfile::tempdir().unwrap();
        let dir = path(data.path(), "t", 0);
        let (old, new) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        prepare(&dir, old).unwrap();
        fs::write(dir.join("00000000000000000000.log"), b"old data").unwrap();
        prepare(&dir, old).unwrap();
        assert!(dir.join("00000000000000000000.log").exists(), "same topic: kept");
        prepare(&dir, new).unwrap();
        assert!(!dir.join("00000000000000000000.log").exists(), "another topic's data is removed");
        assert_eq!(read_id(&dir).unwrap(), Some(new));
        // A legacy directory without an id is adopted.
        let legacy = path(data.path(), "l", 1);
        fs::create_dir(&legacy).unwrap();
        fs::write(legacy.join("x.log"), b"kept").unwrap();
        prepare(&legacy, old).unwrap();
        assert!(legacy.join("x.log").exists());
    }

    #[test]
    fn sweep_removes_what_nobody_holds_and_half_removed_leftovers() {
        let data = tempfile::tempdir().unwrap();
        let id = uuid::Uuid::new_v4();
        for (t, p) in [("kept", 0), ("gone", 0), ("gone", 1)] {
            prepare(&path(data.path(), t, p), id).unwrap();
        }
        fs::create_dir(data.path().join("gone-2.deleted")).unwrap();
        fs::create_dir(data.path().join("meta")).unwrap();
        let keep: HashSet<(String, i32)> = [("kept".to_string(), 0)].into_iter().collect();
        let removed = sweep(data.path(), &keep).unwrap();
        assert_eq!(removed.len(), 3);
        assert!(path(data.path(), "kept", 0).exists());
        assert!(data.path().join("meta").exists());
        assert!(!data.path().join("gone-2.deleted").exists());
    }
}
