//! The one place that makes `include/batchdb.h`: the committed header must be what cbindgen
//! generates from `src/ffi/` now, and `BATCHDB_BLESS=1 cargo test --test header` rewrites it.
//! (No build script writes it, so a build can never hide a stale header from this test.)

/// The header's opening comment: the conventions list that opens `src/ffi/mod.rs`, from its
/// "Conventions" line to the end of the module comment, with Markdown's backticks dropped.
fn conventions(crate_dir: &std::path::Path) -> Result<String, String> {
    let module = std::fs::read_to_string(crate_dir.join("src/ffi/mod.rs")).map_err(|e| e.to_string())?;
    let doc: Vec<&str> = module
        .lines()
        .map_while(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .skip_while(|l| !l.starts_with("Conventions for every function"))
        .collect();
    if doc.is_empty() {
        return Err("src/ffi/mod.rs has no \"Conventions for every function\" list".into());
    }
    let mut text = String::from(
        "/*\n * batchdb: an embedded job queue and content-addressed blob store in one SQLite file.\n *\n",
    );
    for line in doc {
        let line = line.replace('`', "");
        let line = line.strip_prefix("- ").map(|l| format!(" - {l}")).unwrap_or(line);
        let line = line.strip_prefix("  ").map(|l| format!("   {l}")).unwrap_or(line);
        if line.is_empty() {
            text.push_str(" *\n");
        } else {
            text.push_str(&format!(" * {line}\n"));
        }
    }
    text.push_str(" */");
    Ok(text)
}

/// Generates the C header from `src/ffi/` with the settings of `cbindgen.toml`.
fn generate_header(crate_dir: &std::path::Path) -> Result<String, String> {
    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))?;
    config.header = Some(conventions(crate_dir)?);
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/lib.rs"))
        .generate()
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    bindings.write(&mut out);
    let text = String::from_utf8(out).map_err(|e| e.to_string())?;
    // `#define X -1` breaks expressions such as `a-X`; parenthesize negative constants.
    Ok(text
        .lines()
        .map(|line| match line.strip_prefix("#define ").and_then(|rest| rest.split_once(" -")) {
            Some((name, value)) => format!("#define {name} (-{value})\n"),
            None => format!("{line}\n"),
        })
        .collect())
}

#[test]
fn header_is_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let fresh = generate_header(dir).expect("cbindgen generates the header");
    let path = dir.join("include/batchdb.h");
    if std::env::var_os("BATCHDB_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &fresh).expect("writing include/batchdb.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/batchdb.h differs from what cbindgen generates: run `BATCHDB_BLESS=1 cargo test --test header`"
    );
}

#[test]
fn header_has_every_name_of_the_contract() {
    let header = include_str!("../include/batchdb.h");
    let names = [
        "typedef struct batchdb batchdb;",
        "typedef struct batchdb_writer batchdb_writer;",
        "typedef struct batchdb_reader batchdb_reader;",
        "typedef struct batchdb_cursor batchdb_cursor;",
        "typedef struct batchdb_job batchdb_job;",
        "#define BATCHDB_OK 0",
        "#define BATCHDB_DONE 1",
        "#define BATCHDB_ERR_INVALID (-1)",
        "#define BATCHDB_ERR_NOT_FOUND (-2)",
        "#define BATCHDB_ERR_IO (-3)",
        "#define BATCHDB_ERR_CORRUPT (-4)",
        "#define BATCHDB_ERR_BUSY (-5)",
        "#define BATCHDB_ERR_ABORTED (-6)",
        "#define BATCHDB_ERR_PANIC (-7)",
        "#define BATCHDB_ERR_MISUSE (-8)",
        "#define BATCHDB_ERR_STALE (-9)",
        "#define BATCHDB_LIST_JOB 0",
        "#define BATCHDB_LIST_PENDING 1",
        "#define BATCHDB_LIST_RESULT 2",
        "#define BATCHDB_LIST_FAIL 3",
        "#define BATCHDB_EVENT_CREATE 0",
        "#define BATCHDB_EVENT_PUSH 1",
        "#define BATCHDB_EVENT_START 2",
        "#define BATCHDB_EVENT_RESULT 3",
        "#define BATCHDB_EVENT_FAIL 4",
        "} batchdb_error;",
        "} batchdb_options;",
        "} batchdb_row;",
        "} batchdb_run_options;",
        "} batchdb_event;",
        "} batchdb_push_options;",
        "(*batchdb_chunk_fn)(",
        "(*batchdb_run_fn)(",
        "(*batchdb_event_fn)(",
    ];
    let functions = [
        "batchdb_open",
        "batchdb_close",
        "batchdb_create",
        "batchdb_add",
        "batchdb_push",
        "batchdb_writer_open",
        "batchdb_writer_write",
        "batchdb_writer_create",
        "batchdb_writer_add",
        "batchdb_writer_abort",
        "batchdb_get",
        "batchdb_reader_open",
        "batchdb_reader_read",
        "batchdb_reader_close",
        "batchdb_list",
        "batchdb_cursor_next",
        "batchdb_cursor_free",
        "batchdb_claim",
        "batchdb_job_key",
        "batchdb_job_created",
        "batchdb_job_read",
        "batchdb_job_write",
        "batchdb_job_complete",
        "batchdb_job_fail",
        "batchdb_run",
        "batchdb_stop",
        "batchdb_subscribe",
        "batchdb_retry",
        "batchdb_gc",
        "batchdb_version",
        "batchdb_push_with",
        "batchdb_add_with",
        "batchdb_cancel",
        "batchdb_prune",
    ];
    for name in names {
        assert!(header.contains(name), "the header lacks {name:?}");
    }
    for f in functions {
        let declared = [' ', '*'].iter().any(|before| header.contains(&format!("{before}{f}(")));
        assert!(declared, "the header lacks the function {f}");
    }
}
