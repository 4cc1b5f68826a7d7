//! The data directory: private to outcall's user, and used by one outcall at a time.

use std::{
    fs::{File, OpenOptions, TryLockError},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use anyhow::Context;

/// The file whose exclusive lock marks the data directory as taken.
pub const LOCK_FILE: &str = "outcall.lock";

/// Holds the data directory's lock; the lock goes with the process (even a `kill -9`).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Opens `stored` for reading only when, with symbolic links and `..` resolved, it is a regular
/// file inside `directory`: a path read from the database, however it was changed, reaches
/// nothing else. The file is opened without following a last symbolic link and without blocking
/// on a FIFO, and checked again once open. Blocking: call it off the async workers. Answers the
/// file and its resolved path.
pub fn open_inside(directory: &Path, stored: &Path) -> std::io::Result<(File, PathBuf)> {
    let outside =
        || std::io::Error::new(std::io::ErrorKind::NotFound, "not a file of the directory");
    let root = std::fs::canonicalize(directory)?;
    let resolved = std::fs::canonicalize(stored)?;
    if resolved == root || !resolved.starts_with(&root) {
        return Err(outside());
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&resolved)?;
    if !file.metadata()?.is_file() {
        return Err(outside());
    }
    Ok((file, resolved))
}

/// Creates the data directory (mode 0700) or tightens an existing one (directories 0700, files
/// 0600: the database holds password hashes, token digests and phone numbers), makes every file
/// outcall creates from now on private (umask 077), and takes the directory's lock: a second
/// outcall on the same directory would dial the same numbers and end the first one's live calls.
pub fn prepare(dir: &Path) -> anyhow::Result<DataDirLock> {
    // SAFETY: umask only swaps the process's file creation mask; it cannot fail.
    unsafe { libc::umask(0o077) };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    let lock_path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .with_context(|| format!("opening the lock file {}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => anyhow::bail!(
            "another outcall is already running on the data directory {} (it holds {}): stop it, \
             or give this one its own --data-dir",
            dir.display(),
            lock_path.display()
        ),
        Err(TryLockError::Error(error)) => {
            return Err(error)
                .with_context(|| format!("locking the data directory {}", dir.display()))
        }
    }
    let tightened = tighten(dir)
        .with_context(|| format!("making the data directory {} private", dir.display()))?;
    if tightened > 0 {
        tracing::warn!(
            count = tightened,
            data_dir = %dir.display(),
            "made files of the data directory private (directories 0700, files 0600)"
        );
    }
    Ok(DataDirLock { _file: file })
}

/// Sets directories to 0700 and files to 0600 under `dir` (itself included); answers how many
/// it changed. Symbolic links are left alone.
fn tighten(dir: &Path) -> std::io::Result<usize> {
    let mut changed = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path)?;
        let wanted = if metadata.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
            0o700
        } else if metadata.is_file() {
            0o600
        } else {
            continue;
        };
        if metadata.permissions().mode() & 0o777 != wanted {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(wanted))?;
            changed += 1;
        }
    }
    Ok(changed)
}
