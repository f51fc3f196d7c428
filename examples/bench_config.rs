//! Writes a config with N generated accounts for the benchmarks (bench/*.sh).
//!
//! Usage: `bench_config N DIR BASE_URL LISTEN [POLICY_TOML]`. Writes `DIR/config.toml`
//! (state in `DIR/state`, one shared secret file `DIR/secret`, JSON logs, polling off)
//! and `DIR/accounts.txt` (one account name per line, for wrk's Lua script). Account `i`
//! is named `acct{i}` with appid `wx` + 16 lowercase hex digits derived from `i`.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// The appid of account `i`: distinct for every `i` (an odd multiplier is a bijection).
pub fn appid(i: u64) -> String {
    format!("wx{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed)
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: bench_config N DIR BASE_URL LISTEN [POLICY_TOML]");
        std::process::exit(2);
    }
    let n: u64 = args[1].parse().expect("N is a number");
    let dir = PathBuf::from(&args[2]);
    let (base_url, listen) = (&args[3], &args[4]);
    let policy = args.get(5).cloned().unwrap_or_default();
    std::fs::create_dir_all(&dir)?;
    let secret = dir.join("secret");
    std::fs::write(&secret, "bench-secret-0123456789abcdef0123\n")?;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))?;
    let mut text = format!(
        "[daemon]\nlisten = \"{listen}\"\nstate_dir = \"{}\"\nlog_format = \"json\"\n\n\
         [wechat]\nbase_url = \"{base_url}\"\ntimeout = \"2s\"\n\n[policy]\n{policy}\n\n\
         [poll]\ninterval = \"0s\"\n",
        dir.join("state").display()
    );
    let mut names = String::new();
    for i in 0..n {
        write!(
            text,
            "\n[[accounts]]\nname = \"acct{i}\"\nappid = \"{}\"\nsecret_file = \"{}\"\n",
            appid(i),
            secret.display()
        )
        .unwrap();
        writeln!(names, "acct{i}").unwrap();
    }
    let config = dir.join("config.toml");
    std::fs::write(&config, text)?;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600))?;
    std::fs::write(dir.join("accounts.txt"), names)?;
    println!("{}", config.display());
    Ok(())
}
