//! Generates `include/batchdb.h` from `src/ffi/` with cbindgen, rewriting the file only when
//! its content changes (so that an unchanged header keeps its timestamp). `tests/header.rs`
//! checks that the committed header is current.

include!("src/ffi/header_gen.rs");

fn main() {
    for watched in ["src/ffi", "src/lib.rs", "cbindgen.toml", "build.rs"] {
        println!("cargo:rerun-if-changed={watched}");
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = std::path::Path::new(&dir);
    let header = generate_header(dir).unwrap_or_else(|e| panic!("cbindgen: {e}"));
    let path = dir.join("include/batchdb.h");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(header.as_str()) {
        std::fs::create_dir_all(dir.join("include")).expect("creating include/");
        std::fs::write(&path, header).expect("writing include/batchdb.h");
    }
}
