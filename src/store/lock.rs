//! One owner per `state_dir`: an exclusive lock on `wxquotad.lock`, taken before the
//! database is opened and held for the life of the process (the kernel drops it when
//! the process ends, however it ends). The file holds the owner's pid, so a second
//! daemon can name the first.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::StoreError;

/// The lock file's name inside `state_dir`.
pub const LOCK_FILE: &str = "wxquotad.lock";

/// The held lock. Dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Takes the lock on `state_dir` without waiting, or says who holds it. Writes
    /// nothing unless the lock was taken.
    pub fn take(state_dir: &Path) -> Result<StateLock, StoreError> {
        let path = state_dir.join(LOCK_FILE);
        let io = |source| StoreError::Dir {
            dir: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        if let Err(e) = try_flock(&file) {
            if e.kind() != std::io::ErrorKind::WouldBlock {
                return Err(io(e));
            }
            let mut holder = String::new();
            let _ = (&file).take(64).read_to_string(&mut holder);
            return Err(StoreError::Locked {
                dir: state_dir.to_path_buf(),
                holder: describe(&holder),
            });
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "pid {}", std::process::id()).map_err(io)?;
        Ok(StateLock { _file: file })
    }
}

/// An exclusive flock(2) on `file`, without waiting (EWOULDBLOCK when held elsewhere).
fn try_flock(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock takes a file descriptor we own (borrowed from `file` for the call)
    // and two flag bits; it touches no memory of ours.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// "pid 1234" from the lock file's text, or a fallback when it is unreadable.
fn describe(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    match line
        .strip_prefix("pid ")
        .and_then(|p| p.parse::<u32>().ok())
    {
        Some(pid) => format!("pid {pid}"),
        None => "pid unknown".to_string(),
    }
}

/// Where the lock of `state_dir` lives (for messages and tests).
pub fn lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join(LOCK_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_first_and_a_released_one_can_be_taken() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::take(dir.path()).unwrap();
        let err = StateLock::take(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("in use by another wxquotad"), "{err}");
        drop(first);
        StateLock::take(dir.path()).unwrap();
    }
}
