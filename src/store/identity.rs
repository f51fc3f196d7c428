//! Noticing that the state file was deleted or replaced while the daemon runs (issue 9
//! item 8): the open connection would go on writing to the unlinked file, and after a
//! restart the month would read 0 clears. The file's identity (device and inode) is
//! recorded at open; once it changes or the file vanishes, the store is "lost" for good
//! (until a restart): no clear attempt is recorded, so none is sent, and `/healthz`
//! says why.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing::error;

/// The state file's identity at open, and what was found wrong with it since.
pub(super) struct Identity {
    file: PathBuf,
    /// (device, inode) at open; `None` where the platform has no such notion.
    at_open: Option<(u64, u64)>,
    lost: Mutex<Option<String>>,
}

fn identity_of(file: &Path) -> std::io::Result<Option<(u64, u64)>> {
    let meta = std::fs::metadata(file)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok(Some((meta.dev(), meta.ino())))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Ok(None)
    }
}

impl Identity {
    pub(super) fn record(file: &Path) -> Identity {
        Identity {
            file: file.to_path_buf(),
            at_open: identity_of(file).ok().flatten(),
            lost: Mutex::new(None),
        }
    }

    /// `Err(why)` once the file is gone or another file took its place; latched.
    pub(super) fn check(&self) -> Result<(), String> {
        let mut lost = self.lost.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(why) = lost.as_ref() {
            return Err(why.clone());
        }
        let why = match identity_of(&self.file) {
            Ok(now) if now == self.at_open => return Ok(()),
            Ok(_) => format!(
                "state file {} was replaced while the daemon ran (another file is at its \
                 path); clears are stopped so that no budget is recorded in the wrong \
                 place; restart the daemon after restoring the file",
                self.file.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!(
                "state file {} was deleted while the daemon ran; clears are stopped (the \
                 month's clears would read 0 after a restart); restore it from a backup \
                 and restart the daemon",
                self.file.display()
            ),
            Err(e) => format!(
                "state file {} cannot be checked ({e}); clears are stopped",
                self.file.display()
            ),
        };
        error!(event = "state_lost", file = %self.file.display(), "{why}");
        *lost = Some(why.clone());
        Err(why)
    }
}
