// Not a module of the crate: build.rs and tests/header.rs include!() it (cbindgen is a
// build- and dev-dependency only).
// Shared by build.rs (which writes include/batchdb.h) and tests/header.rs (which checks that
// the committed header is current), so both produce the same bytes.

/// Generates the C header from `src/ffi/` with the settings of `cbindgen.toml`.
pub fn generate_header(crate_dir: &std::path::Path) -> Result<String, String> {
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))?;
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
