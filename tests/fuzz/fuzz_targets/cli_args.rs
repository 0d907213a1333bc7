//! The CLI's argument parsing: the clap definitions of src/bin/batchdb/cli.rs, included as
//! they are, fed argument lists of arbitrary bytes (the input split at NUL bytes, at most 16
//! arguments, not necessarily UTF-8).
//!
//! - parsing and rendering any outcome (help, version, every error) never panics; the fuzz
//!   build has debug assertions on, so clap also checks the definitions themselves;
//! - rule `help-shows-env`: nothing clap prints shows `$BATCHDB_PATH`, which may hold a
//!   PostgreSQL password (the target sets one) (issue 17, defect 3);
//! - rule `flag-as-payload`: `add` never takes an unknown option as payload: a first word that
//!   starts with `-` (other than `-` alone, which is no option) came after `--` (issue 17,
//!   defect 6).
//!
//! `BATCHDB_FUZZ_ALLOW=rule,rule` switches named rules off, so that a run on a tree where that
//! finding is still open looks for other faults.
#![no_main]

#[allow(dead_code)]
#[path = "../../../src/bin/batchdb/cli.rs"]
mod cli;

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::Once;

const SECRET: &str = "fuzz-secret-pw-7f3a";

/// Whether the rule `name` is switched off by `BATCHDB_FUZZ_ALLOW` (a comma-separated list of
/// rule names): for a run on a tree where that finding is still open, so as to look for others.
fn allowed(name: &str) -> bool {
    static ALLOW: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    ALLOW
        .get_or_init(|| {
            let v = std::env::var("BATCHDB_FUZZ_ALLOW").unwrap_or_default();
            v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
        })
        .iter()
        .any(|a| a == name)
}

/// `-x`, `--x`: what a command line treats as an option; `-` alone is a value.
fn looks_like_option(word: &[u8]) -> bool {
    word.len() > 1 && word[0] == b'-'
}

fuzz_target!(|data: &[u8]| {
    static ENV: Once = Once::new();
    ENV.call_once(|| std::env::set_var("BATCHDB_PATH", format!("postgres://batch:{SECRET}@db.invalid/jobs")));

    let mut args = vec![OsString::from("batchdb")];
    args.extend(data.split(|&b| b == 0).take(16).map(|a| OsString::from_vec(a.to_vec())));

    match cli::Cli::try_parse_from(&args) {
        Ok(parsed) => {
            // Debug output walks every parsed value.
            let _ = format!("{parsed:?}");
            if let cli::Command::Add { words, .. } = &parsed.command {
                if let Some(first) = words.first() {
                    let dashdash = args.iter().any(|a| a.as_bytes() == b"--");
                    assert!(
                        allowed("flag-as-payload") || !looks_like_option(first.as_bytes()) || dashdash,
                        "add took an option as payload (issue 17, defect 6): {args:?}"
                    );
                }
            }
        }
        Err(e) => {
            let text = e.render().to_string();
            let _ = e.kind();
            assert!(
                allowed("help-shows-env") || !text.contains(SECRET),
                "clap printed $BATCHDB_PATH (issue 17, defect 3) for {args:?}"
            );
        }
    }
});
