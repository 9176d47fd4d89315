//! File-system helpers: the directory lock and the fsync discipline that makes a
//! rename durable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::CoordError;

pub(crate) const LOCK_FILE: &str = "LOCK";

/// Makes renames and creations inside `dir` durable: without it a crash can bring
/// back the old directory entry even though the renamed file's data was synced.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `parts` to `tmp`, syncs it, then renames it over `dest` and syncs the
/// directory, so `dest` is always either the old file or the whole new one.
pub(crate) fn replace_file(dir: &Path, tmp: &str, dest: &str, parts: &[&[u8]]) -> Result<(), CoordError> {
    let tmp_path = dir.join(tmp);
    let mut file = File::create(&tmp_path).map_err(CoordError::io(format!("creating {}", tmp_path.display())))?;
    for part in parts {
        file.write_all(part).map_err(CoordError::io(format!("writing {}", tmp_path.display())))?;
    }
    file.sync_all().map_err(CoordError::io(format!("syncing {}", tmp_path.display())))?;
    drop(file);
    let dest_path = dir.join(dest);
    fs::rename(&tmp_path, &dest_path).map_err(CoordError::io(format!(
        "renaming {} to {}",
        tmp_path.display(),
        dest_path.display()
    )))?;
    sync_dir(dir).map_err(CoordError::io(format!("syncing directory {}", dir.display())))
}

/// Removes a leftover temporary file from an interrupted write; it was never
/// renamed into place, so it holds nothing that recovery needs.
pub(crate) fn remove_stale(path: &Path) -> Result<(), CoordError> {
    match fs::remove_file(path) {
        Ok(()) => {
            tracing::info!(path = %path.display(), "removed temporary file left by an interrupted write");
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CoordError::io(format!("removing {}", path.display()))(e)),
    }
}

/// An exclusive `flock` on `dir/LOCK`, held as long as this value lives. Two
/// brokers sharing one metadata directory would each replay and append to the
/// same journal and silently lose each other's writes; this turns that into an
/// error at open. The kernel drops the lock when the process dies, so there is no
/// stale lock to clean up after a crash.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock, CoordError> {
        let lock_path = dir.join(LOCK_FILE);
        let context = || format!("opening lock file {}", lock_path.display());
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| CoordError::io(context())(e))?;
        // SAFETY: flock only reads the descriptor, which `file` keeps open.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(CoordError::Locked { dir: dir.to_path_buf(), lock_path, holder: read_holder(&mut file) });
            }
            return Err(CoordError::io(format!("locking {}", lock_path.display()))(err));
        }
        // The pid is only for the error message of a later, refused opener.
        let pid = format!("{}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| std::os::unix::fs::FileExt::write_all_at(&file, pid.as_bytes(), 0))
            .map_err(CoordError::io(format!("writing pid to {}", lock_path.display())))?;
        Ok(DirLock { _file: file })
    }
}

fn read_holder(file: &mut File) -> Option<String> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    let pid = text.trim();
    (!pid.is_empty()).then(|| pid.to_string())
}
