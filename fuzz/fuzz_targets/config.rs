//! The config loader: any bytes in the file give a config or located errors (exit 78 in
//! the daemon), never a panic.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(data).expect("write");
    file.flush().expect("flush");
    if let Err(errors) = wxquotad::config::load(file.path()) {
        assert!(
            !errors.0.is_empty(),
            "an error result names at least one error"
        );
        for e in &errors.0 {
            assert!(!e.message.is_empty());
        }
    }
});
