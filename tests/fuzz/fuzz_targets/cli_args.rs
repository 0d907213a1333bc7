//! The CLI's argument parsing: the clap definitions of src/bin/batchdb/cli.rs, included as
//! they are, fed argument lists of arbitrary bytes (the input split at NUL bytes, at most 16
//! arguments, not necessarily UTF-8).
//!
//! - parsing and rendering any outcome (help, version, every error) never panics; the fuzz
//!   build has debug assertions on, so clap also checks the definitions themselves;
//! - nothing clap prints shows `$BATCHDB_PATH`, which may hold a PostgreSQL password (the
//!   target sets one) (issue 17, defect 3);
//! - `add` never takes an unknown option as payload: a first word that starts with `-` came
//!   after `--` (issue 17, defect 6).
//!
//! With `BATCHDB_FUZZ_ALLOW_KNOWN=1` the two issue-17 rules are not enforced, so that a run on
//! a tree without their fixes looks for other faults.
#![no_main]

#[allow(dead_code)]
#[path = "../../../src/bin/batchdb/duration.rs"]
mod duration;

#[allow(dead_code)]
#[path = "../../../src/bin/batchdb/cli.rs"]
mod cli;

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::Once;

const SECRET: &str = "fuzz-secret-pw-7f3a";

fuzz_target!(|data: &[u8]| {
    static ENV: Once = Once::new();
    ENV.call_once(|| std::env::set_var("BATCHDB_PATH", format!("postgres://batch:{SECRET}@db.invalid/jobs")));
    let allow_known = std::env::var_os("BATCHDB_FUZZ_ALLOW_KNOWN").is_some_and(|v| v == "1");

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
                        allow_known || !first.as_bytes().starts_with(b"-") || dashdash,
                        "add took an option as payload (issue 17, defect 6): {args:?}"
                    );
                }
            }
        }
        Err(e) => {
            let text = e.render().to_string();
            let _ = e.kind();
            assert!(
                allow_known || !text.contains(SECRET),
                "clap printed $BATCHDB_PATH (issue 17, defect 3) for {args:?}"
            );
        }
    }
});
