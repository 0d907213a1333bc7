//! The library's modules stack (issue 18): no module imports, directly or through others, a
//! module that imports it back, and only `src/store/sqlite` itself and `store::open` name
//! the SQLite backend. Reads the sources under `src/` (not `src/bin`), follows every
//! `crate::…`, `super::…` and `self::…` path outside comments and unit-test modules, and
//! fails naming each cycle with the imports that close it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path ("store::sqlite", "" for the crate root) → source file.
fn modules() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    let root = stack[0].clone();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path != root.join("bin") {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
                parts.pop();
            }
            out.insert(parts.join("::"), std::fs::read_to_string(&path).unwrap());
        }
    }
    out
}

/// The source without line comments and without a trailing `#[cfg(test)] mod tests`.
fn code(src: &str) -> String {
    let src = match src.find("#[cfg(test)]\nmod tests") {
        Some(i) => &src[..i],
        None => src,
    };
    src.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path that starts with `crate::`, `super::` or `self::`, with `{a, b::c}` groups
/// expanded one level (enough for `use` lists).
fn paths(code: &str) -> Vec<String> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        let at_word_start = i == 0 || !word(b[i - 1]) && b[i - 1] != b':';
        let rest = &b[i..];
        if at_word_start && ["crate::", "super::", "self::"].iter().any(|p| rest.starts_with(p.as_bytes())) {
            let mut j = i;
            while j < b.len() && (word(b[j]) || b[j] == b':') {
                j += 1;
            }
            let base = code[i..j].trim_end_matches(':').to_string();
            if code[i..j].ends_with("::") && j < b.len() && b[j] == b'{' {
                let end = b[j..].iter().position(|&c| c == b'}').map_or(b.len(), |e| j + e);
                for item in code[j + 1..end].split(',') {
                    let item = item.trim().split([' ', ':']).next().unwrap_or("");
                    if !item.is_empty() {
                        out.push(format!("{base}::{item}"));
                    }
                }
                i = end;
            } else {
                out.push(base);
                i = j;
            }
        }
        i += 1;
    }
    out
}

/// The module a path from `from` lands in: its longest prefix that is a module.
fn resolve(from: &str, path: &str, mods: &BTreeMap<String, String>) -> Option<String> {
    let mut segs: Vec<&str> = path.split("::").collect();
    let mut base: Vec<&str> = if from.is_empty() { vec![] } else { from.split("::").collect() };
    match segs[0] {
        "crate" => base.clear(),
        "self" => {}
        _ => {
            while segs.first() == Some(&"super") {
                base.pop();
                segs.remove(0);
            }
            segs.insert(0, "self");
        }
    }
    segs.remove(0);
    (0..=segs.len())
        .rev()
        .map(|n| base.iter().chain(&segs[..n]).copied().collect::<Vec<_>>().join("::"))
        .find(|m| mods.contains_key(m))
}

/// Module → the modules it imports: not itself, and not its ancestors. A parent declares its
/// children and defines the contract they implement (`store`'s `Store` trait, `ffi`'s C
/// types), so a child naming its parent is how Rust nests modules, not a cycle; between any
/// two other modules, an import is an edge.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules();
    mods.iter()
        .map(|(m, src)| {
            let to = paths(&code(src))
                .iter()
                .filter_map(|p| resolve(m, p, &mods))
                .filter(|t| t != m && !t.is_empty() && !m.starts_with(&format!("{t}::")))
                .collect();
            (m.clone(), to)
        })
        .collect()
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let g = graph();
    assert!(g.len() > 20, "found the modules: {:?}", g.keys());
    assert!(g["blob"].contains("store") && g["list"].contains("row"), "the scan sees imports: {g:?}");
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for t in &g[&m] {
                if seen.insert(t.clone()) {
                    todo.push(t.clone());
                }
            }
        }
        seen
    };
    let mut cycles = Vec::new();
    for (m, to) in &g {
        for t in to {
            if reach(t).contains(m) {
                cycles.push(format!("{m} imports {t}, which reaches {m} again"));
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn only_the_sqlite_backend_and_store_open_name_it() {
    let g = graph();
    let named: Vec<&String> = g
        .iter()
        .filter(|(m, to)| {
            !m.starts_with("store::sqlite")
                && *m != "store"
                && to.iter().any(|t| t.starts_with("store::sqlite"))
        })
        .map(|(m, _)| m)
        .collect();
    assert!(named.is_empty(), "modules that import the SQLite backend: {named:?}");
}
