//! Reading the files the config names (the config itself, secret and token files)
//! safely: only regular files, opened without blocking (a FIFO or a device would
//! otherwise hang `check`, start-up or a reload), never more than a stated size; and
//! checking that a secret is one (a single word, no line break inside).

use std::io::Read;
use std::path::Path;

/// Largest config file read: 4 MiB (thousands of accounts fit in far less).
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;
/// Largest TLS certificate chain or key file read: 1 MiB.
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;
/// Largest secret or token file read: 4 KiB (AppSecrets are 32 characters, access
/// tokens a few hundred).
pub const MAX_SECRET_BYTES: u64 = 4096;

/// The contents of the regular file at `path`, at most `max` bytes. The file is opened
/// with `O_NONBLOCK`, so opening a FIFO returns at once instead of waiting for a writer,
/// and is then refused like every other non-regular file. Errors name the path, never
/// the contents.
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = opts
        .open(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!(
            "{} is not a regular file (it is {})",
            path.display(),
            kind(&meta)
        ));
    }
    if meta.len() > max {
        return Err(format!(
            "{} is {} bytes, larger than the {max} bytes accepted",
            path.display(),
            meta.len()
        ));
    }
    let mut buf = Vec::new();
    // One more than allowed, to notice a file that grew since the check above.
    file.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if buf.len() as u64 > max {
        return Err(format!(
            "{} is larger than the {max} bytes accepted",
            path.display()
        ));
    }
    Ok(buf)
}

/// What a non-regular file is, for messages.
fn kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
    }
    "not a plain file"
}

/// A secret or token from a file: the file's one line, without trailing whitespace.
/// Refused (with an error that never holds the contents) when the file is not a
/// regular file, is too large, is empty, or is not one secret (see [`check_secret`]).
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    let bytes = read_regular(path, MAX_SECRET_BYTES)?;
    let text =
        String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))?;
    let value = text.trim_end();
    if value.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    check_secret(value).map_err(|why| format!("{} {why}", path.display()))?;
    Ok(value.to_string())
}

/// Whether `value` can be a secret or token: one word of printable characters. A line
/// break, space or control character inside (a second line in a token file, a pasted
/// prompt) would never match what WeChat or a client sends, and every call would fail
/// with a puzzling 401 or 40125. The message never holds the value.
pub fn check_secret(value: &str) -> Result<(), String> {
    if value.len() as u64 > MAX_SECRET_BYTES {
        return Err(format!(
            "is {} bytes long; a secret is at most {MAX_SECRET_BYTES}",
            value.len()
        ));
    }
    if let Some(c) = value.chars().find(|c| c.is_whitespace() || c.is_control()) {
        let what = match c {
            '\n' | '\r' => "a line break",
            ' ' | '\t' => "a space or tab",
            _ => "a control or whitespace character",
        };
        return Err(format!(
            "holds {what} inside; expected the secret alone on one line"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_small_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok");
        std::fs::write(&ok, "S3CRET\n").unwrap();
        assert_eq!(read_secret_file(&ok).unwrap(), "S3CRET");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; 5000]).unwrap();
        let e = read_secret_file(&big).unwrap_err();
        assert!(e.contains("5000 bytes, larger than the 4096"), "{e}");
        let e = read_secret_file(dir.path()).unwrap_err();
        assert!(
            e.contains("is not a regular file (it is a directory)"),
            "{e}"
        );
        // /dev/zero would be read until memory runs out.
        let e = read_regular(Path::new("/dev/zero"), MAX_CONFIG_BYTES).unwrap_err();
        assert!(e.contains("a character device"), "{e}");
        let inner = dir.path().join("inner");
        std::fs::write(&inner, "TOKENPART1\nTOKENPART2\n").unwrap();
        let e = read_secret_file(&inner).unwrap_err();
        assert!(
            e.contains("a line break inside") && !e.contains("TOKENPART"),
            "{e}"
        );
        let crlf = dir.path().join("crlf");
        std::fs::write(&crlf, "TOKEN\r\n").unwrap();
        assert_eq!(read_secret_file(&crlf).unwrap(), "TOKEN");
    }

    /// Opening a FIFO for reading blocks until a writer comes, unless non-blocking.
    #[test]
    fn a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let f = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(read_secret_file(&f));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("reading a FIFO returned (it hangs when opened blocking)");
        let e = got.unwrap_err();
        assert!(e.contains("it is a FIFO"), "{e}");
    }
}
