//! Every invalid config in `tests/fixtures/config/` is rejected with an error at the
//! key and line its first line names (`# expect: <key path> line <n>`, `-` for no key).

use std::path::PathBuf;

use wxquotad::config;

#[test]
fn invalid_fixtures_point_at_the_spot() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 8, "too few fixtures in {}", dir.display());
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| {
                panic!(
                    "{}: first line must be `# expect: KEY line N`",
                    path.display()
                )
            });
        let (key, line) = expect
            .rsplit_once(" line ")
            .unwrap_or_else(|| panic!("{}: bad expect line {expect:?}", path.display()));
        let line: usize = line.trim().parse().unwrap();
        let key = (key != "-").then_some(key);

        let errs = match config::load(&path) {
            Ok(_) => panic!("{} loaded, but should not", path.display()),
            Err(e) => e,
        };
        assert_eq!(
            errs.0.len(),
            1,
            "{}: expected one error, got:\n{errs}",
            path.display()
        );
        let e = &errs.0[0];
        assert_eq!(e.key.as_deref(), key, "{e}");
        assert_eq!(e.line, Some(line), "{e}");
        // The message format other tools (and `wxquotad check`) rely on: file:line:col.
        let prefix = format!("{}:{line}:{}: ", path.display(), e.column.unwrap());
        assert!(e.to_string().starts_with(&prefix), "{e}");
        if let Some(k) = key {
            assert!(e.to_string().contains(k), "{e}");
        }
        assert!(!e.to_string().contains("not-a-real-secret"), "{e}");
    }
}
