//! The engine's durability points. Every fsync/fdatasync of a file or a
//! directory, and every rename or removal of a file, goes through here, so
//! the tests' crash layer (`crashsim`) sees each one and keeps the image a
//! power cut would leave. Outside tests these are the plain calls: the hooks
//! are `#[cfg(test)]` and the write path carries no trait or indirection.
//!
//! Rules the engine follows (and `crashsim` checks):
//! - file data is durable up to the start of its last completed fdatasync;
//! - a name (creation, rename, removal) is durable once its directory is
//!   fsynced after it, a new directory once its parent is.

use std::fs::{self, File};
use std::future::Future;
use std::io;
use std::path::Path;
use std::time::Instant;

use crate::stats;

/// fdatasync of `file`.
pub(crate) fn sync_data(file: &File) -> io::Result<()> {
    let mark = begin(file);
    let started = Instant::now();
    file.sync_data()?;
    stats::FDATASYNC.record(started.elapsed());
    end(mark);
    Ok(())
}

/// fsync of `file` (after a truncation, whose new size must be durable too).
pub(crate) fn sync_all(file: &File) -> io::Result<()> {
    let mark = begin(file);
    let started = Instant::now();
    file.sync_all()?;
    stats::FSYNC.record(started.elapsed());
    end(mark);
    Ok(())
}

/// An fdatasync of `file` submitted another way (io_uring, on a duplicate of
/// its descriptor): `sync` is that operation, not yet started.
pub(crate) async fn synced_by(file: &File, sync: impl Future<Output = io::Result<()>>) -> io::Result<()> {
    let mark = begin(file);
    let started = Instant::now();
    sync.await?;
    stats::FDATASYNC.record(started.elapsed());
    end(mark);
    Ok(())
}

/// fsync of directory `dir`: the names created, renamed or removed in it so
/// far become durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    #[cfg(test)]
    let mark = crate::crashsim::dir_sync_starting(dir);
    let started = Instant::now();
    File::open(dir)?.sync_all()?;
    stats::DIR_FSYNC.record(started.elapsed());
    #[cfg(test)]
    if let Some(mark) = mark {
        crate::crashsim::dir_synced(mark);
    }
    Ok(())
}

/// Creates `dir` and any missing parents, each made durable in its parent.
pub(crate) fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    create_dir_all(parent)?;
    match fs::create_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        r => r?,
    }
    sync_dir(parent)
}

/// Renames `from` to `to`; durable once the directory is synced.
pub(crate) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(test)]
    crate::crashsim::unlinking(to);
    fs::rename(from, to)
}

/// Removes a file; durable once the directory is synced.
pub(crate) fn remove_file(path: &Path) -> io::Result<()> {
    #[cfg(test)]
    crate::crashsim::unlinking(path);
    fs::remove_file(path)
}

/// Removes a directory tree (a deleted partition).
pub(crate) fn remove_dir_all(path: &Path) -> io::Result<()> {
    #[cfg(test)]
    crate::crashsim::unlinking_tree(path);
    fs::remove_dir_all(path)
}

/// A sync makes durable what was written when it started; later writes may
/// or may not be covered, so the crash layer takes the contents here.
#[cfg(test)]
fn begin(file: &File) -> Mark {
    Mark(crate::crashsim::capture(file))
}

#[cfg(test)]
fn end(mark: Mark) {
    if let Some(c) = mark.0 {
        crate::crashsim::commit(c);
    }
}

#[cfg(test)]
struct Mark(Option<crate::crashsim::Capture>);

#[cfg(not(test))]
struct Mark;

#[cfg(not(test))]
#[inline(always)]
fn begin(_file: &File) -> Mark {
    Mark
}

#[cfg(not(test))]
#[inline(always)]
fn end(_mark: Mark) {}
