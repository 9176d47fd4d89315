//! A simulated-crash storage layer for the engine's tests, after LazyFS and
//! TigerBeetle's simulated storage: a power cut loses everything not synced.
//!
//! A SIGKILL keeps the page cache, so a crash test that kills a process cannot
//! see a missing fsync. Here the engine runs on the real filesystem, and a
//! recorder registered for a test's root directory keeps, beside it, the image
//! a power cut would leave, updated only at the engine's durability points
//! (`durable`, which calls the hooks below):
//! - a file's durable contents are its contents when its last completed
//!   fdatasync/fsync started (later writes may miss the sync), keyed by file;
//! - a directory's durable entries (name → file or subdirectory) are its
//!   entries at its last fsync.
//!
//! `simulate_crash` writes that image into a fresh directory: a name never
//! made durable by a directory fsync is gone, a rename not followed by one is
//! undone, a removal not followed by one is undone, data never synced is gone
//! (a durable name whose data was never synced comes back empty), and a
//! directory not synced in its parent is gone with everything in it.
//!
//! Files are known by inode until their last name is removed (`unlinking`):
//! after that the filesystem may give the number to a new file, which must not
//! inherit the old one's durable contents. Test data is small: contents are
//! copied whole at every sync.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// A file or directory as the recorder knows it (see the module comment).
type FileId = u64;
/// (device, inode).
type InodeKey = (u64, u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
}

/// Nesting below a root that materialising follows; the engine uses two levels.
const DEPTH_MAX: usize = 16;

struct Recorder {
    root: PathBuf,
    root_id: FileId,
    next_id: FileId,
    live: HashMap<InodeKey, FileId>,
    /// Durable contents: (capture number, bytes). A sync that started later
    /// wins over one that finished later.
    data: HashMap<FileId, (u64, Vec<u8>)>,
    /// Durable entries of each directory.
    dirs: HashMap<FileId, BTreeMap<OsString, (FileId, Kind)>>,
    /// The capture number of each directory's durable entries: as for file
    /// data, an fsync that started later wins over one that finished later.
    dir_captures: HashMap<FileId, u64>,
    /// Files whose syncs are still in flight at the next crash (`hold_syncs`).
    held: HashSet<FileId>,
    captures: u64,
}

impl Recorder {
    fn id(&mut self, key: InodeKey) -> FileId {
        let next = &mut self.next_id;
        *self.live.entry(key).or_insert_with(|| {
            *next += 1;
            *next
        })
    }

    /// The directory's entries now: what an fsync starting now covers.
    fn capture_dir(&mut self, dir: &Path) -> DirCapture {
        let id = self.id(key(&fs::metadata(dir).expect("a synced directory exists")));
        let mut entries = BTreeMap::new();
        for e in fs::read_dir(dir).expect("a synced directory is readable") {
            let e = e.expect("a directory entry");
            let Ok(m) = e.metadata() else { continue }; // removed meanwhile
            let kind = if m.is_dir() { Kind::Dir } else { Kind::File };
            entries.insert(e.file_name(), (self.id(key(&m)), kind));
        }
        self.captures += 1;
        DirCapture { root: self.root.clone(), id, number: self.captures, entries }
    }
}

/// Every registered root. Tests run in parallel threads, each on its own root.
static RECORDERS: Mutex<Vec<Recorder>> = Mutex::new(Vec::new());

fn recorders() -> MutexGuard<'static, Vec<Recorder>> {
    // A test that panicked while holding the lock leaves the others' roots intact.
    RECORDERS.lock().unwrap_or_else(|e| e.into_inner())
}

fn key(m: &fs::Metadata) -> InodeKey {
    (m.dev(), m.ino())
}

fn recorder_for<'a>(recs: &'a mut [Recorder], path: &Path) -> Option<&'a mut Recorder> {
    recs.iter_mut().find(|r| path.starts_with(&r.root))
}

/// A file's contents as a sync starts, to become durable when it completes.
pub(crate) struct Capture {
    root: PathBuf,
    id: FileId,
    number: u64,
    bytes: Vec<u8>,
}

/// Hook: a sync of `file` is about to start.
pub(crate) fn capture(file: &File) -> Option<Capture> {
    let mut recs = recorders();
    if recs.is_empty() {
        return None;
    }
    let fd_path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    // An unlinked file reads as "<path> (deleted)": still under its root.
    let target = fs::read_link(&fd_path).expect("a descriptor has a path");
    let rec = recorder_for(&mut recs, &target)?;
    let meta = file.metadata().expect("fstat of a descriptor being synced");
    // Through /proc: the descriptor may be write-only (a tmp file) or unlinked.
    let bytes = fs::read(&fd_path).expect("contents of a file being synced");
    rec.captures += 1;
    Some(Capture { root: rec.root.clone(), id: rec.id(key(&meta)), number: rec.captures, bytes })
}

/// Hook: the sync that took `c` completed.
pub(crate) fn commit(c: Capture) {
    let mut recs = recorders();
    let Some(rec) = recs.iter_mut().find(|r| r.root == c.root) else { return };
    if rec.held.contains(&c.id) {
        return;
    }
    let slot = rec.data.entry(c.id).or_insert((0, Vec::new()));
    if c.number > slot.0 {
        *slot = (c.number, c.bytes);
    }
}

/// Hook: directory `dir` was fsynced.
/// A directory's entries as its fsync starts, to become durable when it
/// completes: names created while the fsync runs are not covered by it (a
/// roll racing a background directory sync must not count as synced).
pub(crate) struct DirCapture {
    root: PathBuf,
    id: u64,
    number: u64,
    entries: BTreeMap<std::ffi::OsString, (u64, Kind)>,
}

/// Hook: an fsync of `dir` is starting.
pub(crate) fn dir_sync_starting(dir: &Path) -> Option<DirCapture> {
    let mut recs = recorders();
    if recs.is_empty() {
        return None;
    }
    let dir = dir.canonicalize().ok()?;
    recorder_for(&mut recs, &dir).map(|rec| rec.capture_dir(&dir))
}

/// Hook: the fsync that `cap` captured the start of has completed.
pub(crate) fn dir_synced(cap: DirCapture) {
    let mut recs = recorders();
    if let Some(rec) = recs.iter_mut().find(|r| r.root == cap.root) {
        let newest = rec.dir_captures.entry(cap.id).or_insert(0);
        if cap.number > *newest {
            *newest = cap.number;
            rec.dirs.insert(cap.id, cap.entries);
        }
    }
}

/// Hook: `path` is about to lose its name (removal, or a rename over it).
pub(crate) fn unlinking(path: &Path) {
    let mut recs = recorders();
    if recs.is_empty() {
        return;
    }
    let Ok(m) = fs::symlink_metadata(path) else { return };
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let Ok(parent) = parent.canonicalize() else { return };
    if let Some(rec) = recorder_for(&mut recs, &parent) {
        if m.is_dir() || m.nlink() <= 1 {
            rec.live.remove(&key(&m));
        }
    }
}

/// Hook: the tree at `path` is about to be removed.
pub(crate) fn unlinking_tree(path: &Path) {
    if let Ok(entries) = fs::read_dir(path) {
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                unlinking_tree(&p);
            } else {
                unlinking(&p);
            }
        }
    }
    unlinking(path);
}

/// A test's root directory with a recorder registered for it; removed (and
/// unregistered) when dropped.
pub(crate) struct CrashDir {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl CrashDir {
    /// A new, empty root. It existed before the test, so it is durable itself.
    pub(crate) fn new() -> CrashDir {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let root = dir.path().canonicalize().expect("a canonical root");
        let mut rec = Recorder {
            root: root.clone(),
            root_id: 0,
            next_id: 0,
            live: HashMap::new(),
            data: HashMap::new(),
            dirs: HashMap::new(),
            dir_captures: HashMap::new(),
            held: HashSet::new(),
            captures: 0,
        };
        rec.root_id = rec.id(key(&fs::metadata(&root).expect("the root exists")));
        rec.dirs.insert(rec.root_id, BTreeMap::new());
        recorders().push(rec);
        CrashDir { _dir: dir, root }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.root
    }

    /// From now on, syncs of the file at `path` have not completed when the
    /// power is cut (an fdatasync still in flight, e.g. a sealed segment's
    /// background sync). Only for a file no acknowledgement in the test
    /// depends on: for one that does, this models a disk that lies.
    pub(crate) fn hold_syncs(&self, path: &Path) {
        let m = fs::metadata(path).expect("a file to hold");
        let mut recs = recorders();
        let rec = recs.iter_mut().find(|r| r.root == self.root).expect("registered");
        let id = rec.id(key(&m));
        rec.held.insert(id);
    }

    /// A power cut now: see `simulate_crash`.
    pub(crate) fn crash(&self) -> CrashDir {
        simulate_crash(&self.root)
    }

    /// Records everything now under the root as durable (a crash image is).
    fn adopt(&self) {
        let mut recs = recorders();
        let rec = recs.iter_mut().find(|r| r.root == self.root).expect("registered");
        adopt_dir(rec, &self.root.clone(), 0);
    }
}

fn adopt_dir(rec: &mut Recorder, dir: &Path, depth: usize) {
    assert!(depth < DEPTH_MAX, "directory nesting past {DEPTH_MAX}");
    let cap = rec.capture_dir(dir);
    rec.dir_captures.insert(cap.id, cap.number);
    rec.dirs.insert(cap.id, cap.entries);
    for e in fs::read_dir(dir).expect("a directory being adopted") {
        let e = e.expect("a directory entry");
        let m = e.metadata().expect("metadata of an entry being adopted");
        if m.is_dir() {
            adopt_dir(rec, &e.path(), depth + 1);
        } else {
            let id = rec.id(key(&m));
            rec.captures += 1;
            let bytes = fs::read(e.path()).expect("contents of a file being adopted");
            rec.data.insert(id, (rec.captures, bytes));
        }
    }
}

impl Drop for CrashDir {
    fn drop(&mut self) {
        recorders().retain(|r| r.root != self.root);
    }
}

/// Materialises the durable image of `root` in a fresh root, registered and
/// wholly durable, and returns it. `root` and what runs on it are untouched.
pub(crate) fn simulate_crash(root: &Path) -> CrashDir {
    let root = root.canonicalize().expect("a registered root");
    let (dirs, data, root_id) = {
        let recs = recorders();
        let rec = recs.iter().find(|r| r.root == root).expect("simulate_crash of a registered root");
        let data: HashMap<FileId, Vec<u8>> = rec.data.iter().map(|(id, (_, b))| (*id, b.clone())).collect();
        (rec.dirs.clone(), data, rec.root_id)
    };
    let image = CrashDir::new();
    materialise(&dirs, &data, root_id, image.path(), 0);
    image.adopt();
    image
}

type Dirs = HashMap<FileId, BTreeMap<OsString, (FileId, Kind)>>;

fn materialise(dirs: &Dirs, data: &HashMap<FileId, Vec<u8>>, dir: FileId, to: &Path, depth: usize) {
    assert!(depth < DEPTH_MAX, "directory nesting past {DEPTH_MAX}");
    // A directory never synced has no durable entries.
    let Some(entries) = dirs.get(&dir) else { return };
    for (name, (id, kind)) in entries {
        let path = to.join(name);
        match kind {
            Kind::Dir => {
                fs::create_dir(&path).expect("a directory of the image");
                materialise(dirs, data, *id, &path, depth + 1);
            }
            Kind::File => fs::write(&path, data.get(id).map_or(&[][..], |b| &b[..])).expect("a file of the image"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::durable;

    fn create(path: &Path, bytes: &[u8]) -> File {
        let mut f = fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(path).unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    fn append(f: &mut File, bytes: &[u8]) {
        use std::io::Seek;
        f.seek(std::io::SeekFrom::End(0)).unwrap();
        f.write_all(bytes).unwrap();
    }

    fn read(root: &CrashDir, name: &str) -> Option<Vec<u8>> {
        fs::read(root.path().join(name)).ok()
    }

    #[test]
    fn synced_data_survives_and_unsynced_writes_are_lost() {
        let root = CrashDir::new();
        let mut f = create(&root.path().join("a"), b"one");
        durable::sync_data(&f).unwrap();
        durable::sync_dir(root.path()).unwrap();
        append(&mut f, b"two");
        let image = root.crash();
        assert_eq!(read(&image, "a").unwrap(), b"one");
        durable::sync_all(&f).unwrap();
        assert_eq!(read(&root.crash(), "a").unwrap(), b"onetwo");
        // The live root is untouched by a crash.
        assert_eq!(read(&root, "a").unwrap(), b"onetwo");
    }

    #[test]
    fn a_new_file_without_a_directory_sync_is_gone() {
        let root = CrashDir::new();
        let f = create(&root.path().join("a"), b"data");
        durable::sync_data(&f).unwrap();
        assert_eq!(read(&root.crash(), "a"), None);
        durable::sync_dir(root.path()).unwrap();
        assert_eq!(read(&root.crash(), "a").unwrap(), b"data");
    }

    #[test]
    fn a_durable_name_whose_data_was_never_synced_comes_back_empty() {
        let root = CrashDir::new();
        let _f = create(&root.path().join("a"), b"data");
        durable::sync_dir(root.path()).unwrap();
        assert_eq!(read(&root.crash(), "a").unwrap(), b"");
    }

    #[test]
    fn a_rename_without_a_directory_sync_is_undone() {
        let root = CrashDir::new();
        let (a, tmp) = (root.path().join("a"), root.path().join("a.tmp"));
        durable::sync_data(&create(&a, b"old")).unwrap();
        durable::sync_dir(root.path()).unwrap();
        durable::sync_data(&create(&tmp, b"new")).unwrap();
        durable::rename(&tmp, &a).unwrap();
        let image = root.crash();
        assert_eq!(read(&image, "a").unwrap(), b"old");
        assert_eq!(read(&image, "a.tmp"), None, "the tmp name was never durable");
        durable::sync_dir(root.path()).unwrap();
        let image = root.crash();
        assert_eq!(read(&image, "a").unwrap(), b"new");
        assert_eq!(read(&image, "a.tmp"), None);
    }

    #[test]
    fn a_removal_without_a_directory_sync_is_undone_with_the_old_data() {
        let root = CrashDir::new();
        let a = root.path().join("a");
        durable::sync_data(&create(&a, b"kept")).unwrap();
        durable::sync_dir(root.path()).unwrap();
        durable::remove_file(&a).unwrap();
        // New files that may reuse the inode number must not lend it their data.
        for i in 0..8 {
            let p = root.path().join(format!("n{i}"));
            durable::sync_data(&create(&p, b"other")).unwrap();
            durable::remove_file(&p).unwrap();
        }
        assert_eq!(read(&root.crash(), "a").unwrap(), b"kept");
        durable::sync_dir(root.path()).unwrap();
        assert_eq!(read(&root.crash(), "a"), None);
    }

    #[test]
    fn a_directory_needs_a_sync_of_its_parent() {
        let root = CrashDir::new();
        let sub = root.path().join("p");
        fs::create_dir(&sub).unwrap();
        durable::sync_data(&create(&sub.join("a"), b"x")).unwrap();
        durable::sync_dir(&sub).unwrap();
        assert!(!root.crash().path().join("p").exists(), "p was never synced in the root");
        durable::sync_dir(root.path()).unwrap();
        assert_eq!(fs::read(root.crash().path().join("p/a")).unwrap(), b"x");
        // create_dir_all makes each new level durable in its parent.
        durable::create_dir_all(&root.path().join("q/r")).unwrap();
        assert!(root.crash().path().join("q/r").is_dir());
    }

    #[test]
    fn a_sync_covers_what_was_written_when_it_started() {
        let root = CrashDir::new();
        let mut f = create(&root.path().join("a"), b"before");
        durable::sync_dir(root.path()).unwrap();
        let mut g = f.try_clone().unwrap();
        tokio_uring::start(durable::synced_by(&f, async move {
            append(&mut g, b"during");
            Ok(())
        }))
        .unwrap();
        assert_eq!(read(&root.crash(), "a").unwrap(), b"before");
        // A failed sync makes nothing durable.
        append(&mut f, b"after");
        let failed = tokio_uring::start(durable::synced_by(&f, async { Err(std::io::Error::other("EIO")) }));
        assert!(failed.is_err());
        assert_eq!(read(&root.crash(), "a").unwrap(), b"before");
    }

    #[test]
    fn a_crash_image_is_durable_as_it_stands() {
        let root = CrashDir::new();
        durable::create_dir_all(&root.path().join("p")).unwrap();
        durable::sync_data(&create(&root.path().join("p/a"), b"x")).unwrap();
        durable::sync_dir(&root.path().join("p")).unwrap();
        let once = root.crash();
        let twice = once.crash();
        assert_eq!(fs::read(twice.path().join("p/a")).unwrap(), b"x");
        // Unsynced work on the image is lost at its own crash.
        create(&once.path().join("p/b"), b"y");
        assert!(!once.crash().path().join("p/b").exists());
    }

    #[test]
    fn held_syncs_have_not_completed_at_the_crash() {
        let root = CrashDir::new();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        let (mut fa, mut fb) = (create(&a, b"a1"), create(&b, b"b1"));
        durable::sync_data(&fa).unwrap();
        durable::sync_data(&fb).unwrap();
        durable::sync_dir(root.path()).unwrap();
        root.hold_syncs(&a);
        append(&mut fa, b"a2");
        append(&mut fb, b"b2");
        durable::sync_data(&fa).unwrap();
        durable::sync_data(&fb).unwrap();
        let image = root.crash();
        assert_eq!(read(&image, "a").unwrap(), b"a1");
        assert_eq!(read(&image, "b").unwrap(), b"b1b2");
    }

    #[test]
    fn hooks_ignore_paths_outside_every_root() {
        let _root = CrashDir::new();
        let other = tempfile::tempdir().unwrap();
        let f = create(&other.path().join("a"), b"x");
        assert!(capture(&f).is_none());
        durable::sync_dir(other.path()).unwrap();
    }
}
