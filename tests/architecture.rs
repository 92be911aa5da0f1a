//! The workspace's shape, checked: which crate may use which (the crate
//! graph is the architecture), no engine crate pulls in a user interface
//! (eframe/egui, clap, indicatif), and no two sibling modules of a crate
//! import each other.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// For every workspace crate, the workspace crates it may depend on.
/// Below `cllm-train` nothing knows that training exists.
const LAYERS: &[(&str, &[&str])] = &[
    ("cllm-core", &[]),
    ("cllm-data", &["cllm-core"]),
    ("cllm-memory", &["cllm-core"]),
    (
        "cllm-checkpoint",
        &["cllm-core", "cllm-data", "cllm-memory"],
    ),
    ("cllm-generate", &["cllm-core", "cllm-data", "cllm-memory"]),
    (
        "cllm-serve",
        &["cllm-core", "cllm-data", "cllm-memory", "cllm-generate"],
    ),
    ("cllm-crawl", &[]),
    // The GPU path: its device ops are tested against cllm-core's CPU ops.
    ("cllm-gpu", &["cllm-core"]),
    (
        "cllm-train",
        &[
            "cllm-core",
            "cllm-data",
            "cllm-memory",
            "cllm-checkpoint",
            "cllm-generate",
        ],
    ),
    (
        "cllm-runs",
        &[
            "cllm-core",
            "cllm-data",
            "cllm-memory",
            "cllm-checkpoint",
            "cllm-generate",
            "cllm-train",
        ],
    ),
    (
        "cllm-app",
        &[
            "cllm-core",
            "cllm-data",
            "cllm-memory",
            "cllm-checkpoint",
            "cllm-generate",
            "cllm-train",
            "cllm-runs",
            "cllm-serve",
            "cllm-crawl",
        ],
    ),
];

/// Front-end libraries only the app and the binary may use.
const FRONT_END_ONLY: &[&str] = &[
    "eframe",
    "egui",
    "egui_plot",
    "egui_kittest",
    "rfd",
    "clap",
    "clap_complete",
    "indicatif",
    "console",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every workspace package with its normal (non-dev) dependencies, from
/// `cargo metadata`.
fn packages() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut packages = BTreeMap::new();
    for p in meta["packages"].as_array().unwrap() {
        let deps = p["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null())
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect();
        packages.insert(p["name"].as_str().unwrap().to_string(), deps);
    }
    packages
}

#[test]
fn each_crate_uses_only_the_layers_below_it() {
    let packages = packages();
    let layers: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    for (name, deps) in &packages {
        if name == "cllm" {
            continue;
        }
        let allowed = layers
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{name} is not in LAYERS: say which crates it may use"));
        for dep in deps.iter().filter(|d| d.starts_with("cllm")) {
            assert!(
                allowed.contains(&dep.as_str()),
                "{name} depends on {dep}, which LAYERS does not allow"
            );
        }
        if name != "cllm-app" {
            for dep in deps {
                assert!(
                    !FRONT_END_ONLY.contains(&dep.as_str()),
                    "the engine crate {name} depends on the front-end library {dep}"
                );
            }
        }
    }
    for (name, _) in LAYERS {
        assert!(
            packages.contains_key(*name),
            "LAYERS names {name}, which is not a package"
        );
    }
}

/// A module's path inside its crate: `ops/attention/mod.rs` -> ["ops", "attention"].
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without the unit-test module
/// at its end (tests may use their siblings).
fn code_of(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut code = String::new();
    for (i, line) in lines.iter().enumerate() {
        // Only a test *module* ends the code; a cfg(test) item does not.
        let next = lines.get(i + 1).map_or("", |l| l.trim_start());
        if line.starts_with("#[cfg(test)]")
            && (next.starts_with("mod ") || next.starts_with("pub mod "))
        {
            break;
        }
        code.push_str(line.split("//").next().unwrap_or(""));
        code.push('\n');
    }
    code
}

/// Identifier paths in `code` that start with `crate::` or `super::`,
/// resolved to absolute module paths (relative to the crate root) as far as
/// the text spells them.
fn referenced_paths(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !ident(bytes[i - 1]);
        let rest = &bytes[i..];
        if starts_word && (rest.starts_with(b"crate::") || rest.starts_with(b"super::")) {
            let mut j = i;
            while j < bytes.len() && (ident(bytes[j]) || bytes[j..].starts_with(b"::")) {
                j += if bytes[j..].starts_with(b"::") { 2 } else { 1 };
            }
            let segments: Vec<&str> = code[i..j].split("::").filter(|s| !s.is_empty()).collect();
            let mut path: Vec<String> = Vec::new();
            let mut base = module.to_vec();
            let mut k = 0;
            if segments[0] == "crate" {
                base.clear();
                k = 1;
            }
            while k < segments.len() && segments[k] == "super" {
                base.pop();
                k += 1;
            }
            path.extend(base);
            path.extend(segments[k..].iter().map(|s| s.to_string()));
            found.push(path);
            i = j;
        } else {
            i += 1;
        }
    }
    found
}

/// Cycles among sibling modules: an edge a -> b when code under sibling `a`
/// names something under sibling `b` (same parent module).
fn sibling_cycles(src: &Path) -> Vec<Vec<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> = files
        .iter()
        .map(|f| (module_of(src, f), f.clone()))
        .collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, file) in &modules {
        let code = code_of(&fs::read_to_string(file).unwrap());
        for path in referenced_paths(module, &code) {
            let Some(target) = (1..=path.len())
                .rev()
                .map(|k| path[..k].to_vec())
                .find(|p| modules.contains_key(p))
            else {
                continue;
            };
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common < module.len() && common < target.len() {
                edges
                    .entry(module[..=common].to_vec())
                    .or_default()
                    .insert(target[..=common].to_vec());
            }
        }
    }
    strongly_connected(&edges)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| c.into_iter().map(|m| m.join("::")).collect())
        .collect()
}

/// Tarjan's strongly connected components.
fn strongly_connected(
    edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
) -> Vec<Vec<Vec<String>>> {
    struct State<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<Vec<String>, (usize, usize)>,
        stack: Vec<Vec<String>>,
        next: usize,
        out: Vec<Vec<Vec<String>>>,
    }
    fn visit(s: &mut State, v: &Vec<String>) {
        s.index.insert(v.clone(), (s.next, s.next));
        s.next += 1;
        s.stack.push(v.clone());
        let targets: Vec<Vec<String>> = s.edges.get(v).into_iter().flatten().cloned().collect();
        for w in &targets {
            if !s.index.contains_key(w) {
                visit(s, w);
                let low_w = s.index[w].1;
                s.index.get_mut(v).unwrap().1 = s.index[v].1.min(low_w);
            } else if s.stack.contains(w) {
                let idx_w = s.index[w].0;
                s.index.get_mut(v).unwrap().1 = s.index[v].1.min(idx_w);
            }
        }
        if s.index[v].0 == s.index[v].1 {
            let mut component = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                let done = &w == v;
                component.push(w);
                if done {
                    break;
                }
            }
            s.out.push(component);
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn no_two_sibling_modules_import_each_other() {
    let mut sources = vec![root().join("src")];
    for entry in fs::read_dir(root().join("crates")).unwrap() {
        sources.push(entry.unwrap().path().join("src"));
    }
    let mut cycles = Vec::new();
    for src in sources {
        for cycle in sibling_cycles(&src) {
            cycles.push(format!("{}: {}", src.display(), cycle.join(" <-> ")));
        }
    }
    assert!(
        cycles.is_empty(),
        "module import cycles:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    fs::write(src.join("lib.rs"), "mod a;\nmod b;\nmod c;\n").unwrap();
    fs::write(src.join("a.rs"), "use crate::b::B;\npub struct A;\n").unwrap();
    fs::create_dir(src.join("b")).unwrap();
    fs::write(src.join("b/mod.rs"), "mod inner;\npub struct B;\n").unwrap();
    fs::write(
        src.join("b/inner.rs"),
        "pub fn f(_: super::super::a::A) {}\n",
    )
    .unwrap();
    fs::write(
        src.join("c.rs"),
        "// crate::a is only named in a comment\n#[cfg(test)]\nmod tests { use crate::a::A; }\n",
    )
    .unwrap();
    let cycles = sibling_cycles(src);
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    let mut names = cycles[0].clone();
    names.sort();
    assert_eq!(names, ["a", "b"]);
}

/// The longest a source file may grow: past it, split by job.
const MAX_LINES: usize = 650;

#[test]
fn no_source_file_is_over_650_lines() {
    let mut files = Vec::new();
    for dir in ["src", "tests", "examples"] {
        rust_files(&root().join(dir), &mut files);
    }
    for entry in fs::read_dir(root().join("crates")).unwrap() {
        let krate = entry.unwrap().path();
        for dir in ["src", "tests", "benches"] {
            if krate.join(dir).is_dir() {
                rust_files(&krate.join(dir), &mut files);
            }
        }
    }
    assert!(files.len() > 100, "found only {} files", files.len());
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = fs::read_to_string(f).unwrap().lines().count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}
