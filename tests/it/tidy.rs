//! The architecture's invariants (ARCHITECTURE.md, "Invariants"), checked on the source text, in
//! the spirit of rust-analyzer's tidy tests: a change that breaks one fails here, with the file
//! and line, instead of waiting for a reviewer to notice.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/`, with its path relative to `src/` and its text.
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/"), text)
        })
        .collect()
}

/// The lines of `text` before its `#[cfg(test)]` module (tests may do what the code may not).
fn code(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, l)| (i + 1, l)).take_while(|(_, l)| !l.trim_start().starts_with("#[cfg(test)]"))
}

fn top_module(path: &str) -> &str {
    let first = path.split('/').next().unwrap();
    first.strip_suffix(".rs").unwrap_or(first)
}

/// Every code line (tests excluded) of the files `in_scope` picks that contains one of `needles`,
/// as `src/PATH:LINE: text`.
fn lines_with(in_scope: impl Fn(&str) -> bool, needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in sources() {
        if !in_scope(&path) {
            continue;
        }
        for (n, line) in code(&text) {
            if needles.iter().any(|s| line.contains(s)) {
                found.push(format!("src/{path}:{n}: {}", line.trim()));
            }
        }
    }
    found
}

/// Architecture Invariant: only `store` speaks SQL.
#[test]
fn only_the_store_speaks_sql() {
    let sql = ["SELECT ", "INSERT INTO", "DELETE FROM", "UPDATE deliveries", "UPDATE events", "CREATE TABLE"];
    let found = lines_with(|path| !path.starts_with("store/"), &sql);
    assert!(found.is_empty(), "SQL outside src/store/:\n{}", found.join("\n"));
}

/// Architecture Invariant: `verify` does no I/O and never reads the clock; callers pass `now`
/// and resolved secrets.
#[test]
fn verify_does_no_io_and_reads_no_clock() {
    let io = ["std::fs", "std::env", "std::net", "tokio::", "SystemTime::now", "Instant::now", "reqwest"];
    let found = lines_with(|path| path.starts_with("verify/"), &io);
    assert!(found.is_empty(), "I/O or the clock in src/verify/:\n{}", found.join("\n"));
}

/// Architecture Invariant: no import cycle between top-level modules.
#[test]
fn top_level_modules_import_each_other_in_one_direction() {
    let files = sources();
    let modules: BTreeSet<&str> = files.iter().map(|(p, _)| top_module(p)).collect();
    let mut imports: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (path, text) in &files {
        let from = top_module(path);
        if matches!(from, "lib" | "main") {
            continue;
        }
        for (_, line) in code(text) {
            let mut rest = line;
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if let Some(&to) = modules.get(name.as_str())
                    && to != from
                {
                    imports.entry(from).or_default().insert(to);
                }
            }
        }
    }
    // A cycle is a module that reaches itself.
    let mut cycles = Vec::new();
    for &start in imports.keys() {
        let mut stack = vec![vec![start]];
        let mut seen = BTreeSet::new();
        while let Some(path) = stack.pop() {
            let last = *path.last().unwrap();
            for &next in imports.get(last).into_iter().flatten() {
                if next == start {
                    cycles.push(format!("{} -> {start}", path.join(" -> ")));
                } else if seen.insert(next) {
                    let mut longer = path.clone();
                    longer.push(next);
                    stack.push(longer);
                }
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles between top-level modules:\n{}", cycles.join("\n"));
}

/// Files stay small enough to hold in one's head: one concern each.
#[test]
fn no_source_file_is_over_600_lines() {
    let long: Vec<String> = sources()
        .into_iter()
        .filter(|(_, text)| text.lines().count() > 600)
        .map(|(path, text)| format!("src/{path}: {} lines", text.lines().count()))
        .collect();
    assert!(long.is_empty(), "split these by concern:\n{}", long.join("\n"));
}

/// Architecture Invariant: time comes from the clock passed in (`src/clock.rs`), so tests can
/// drive it. The CLI's `send`, which signs a request for the present moment, is the one exception.
#[test]
fn only_the_clock_reads_the_time_of_day() {
    let found = lines_with(|path| path != "clock.rs" && path != "cli/send.rs", &["SystemTime::now"]);
    assert!(found.is_empty(), "the wall clock read outside src/clock.rs:\n{}", found.join("\n"));
}

/// Architecture Invariant: `verify` is built from plain values; it imports nothing of ours but
/// the secret type, so it can never reach the environment, a file or the database.
#[test]
fn verify_imports_only_the_secret_type() {
    let mut found = Vec::new();
    for (path, text) in sources() {
        if !path.starts_with("verify/") {
            continue;
        }
        for (n, line) in code(&text) {
            let mut rest = line;
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                if !(rest.starts_with("secret") || rest.starts_with("verify")) {
                    found.push(format!("src/{path}:{n}: {}", line.trim()));
                }
            }
        }
    }
    assert!(found.is_empty(), "src/verify/ reaches into the rest of the crate:\n{}", found.join("\n"));
}
