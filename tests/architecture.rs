//! The library's layering, read from its source: no two modules (files) reach each other, so
//! each can be read and changed knowing only what it uses. A module's edges are the modules
//! its `crate::…` and `super::…` paths name, outside comments and its unit tests; an edge to a
//! module's own ancestor (a `mod.rs` that re-exports) does not count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/a/b.rs` → `a::b`, `src/a/mod.rs` → `a`, `src/lib.rs` → `` (binaries are left out).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.first().is_some_and(|p| p == "bin") {
        return None;
    }
    if parts
        .last()
        .is_some_and(|l| l == "mod" || l == "lib" || l == "main")
    {
        parts.pop();
    }
    Some(parts.join("::"))
}

/// The path segments after each occurrence of `prefix::` (`crate::a::b::C` → [a, b, C]); a
/// `{x, y}` group gives one path per name.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let mut rest = code;
    while let Some(i) = rest.find(&format!("{prefix}::")) {
        let before_ok = rest[..i].chars().next_back().is_none_or(|c| !word(c));
        rest = &rest[i + prefix.len() + 2..];
        if !before_ok {
            continue;
        }
        let mut segs = Vec::new();
        let mut r = rest;
        loop {
            let n = r.chars().take_while(|&c| word(c)).count();
            if n == 0 {
                break;
            }
            segs.push(r[..n].to_string());
            r = &r[n..];
            match r.strip_prefix("::") {
                Some(next) => r = next,
                None => break,
            }
        }
        if let Some(group) = r.strip_prefix('{') {
            let names = &group[..group.find('}').unwrap_or(0)];
            for name in names.split(',') {
                let name: String = name.trim().chars().take_while(|&c| word(c)).collect();
                if !name.is_empty() {
                    let mut p = segs.clone();
                    p.push(name);
                    out.push(p);
                }
            }
        } else if !segs.is_empty() {
            out.push(segs);
        }
    }
    out
}

fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeMap<String, PathBuf> = files
        .iter()
        .filter_map(|f| Some((module_of(&src, f)?, f.clone())))
        .collect();
    // The longest prefix of `path` that is a module.
    let resolve = |path: &[String]| -> Option<String> {
        (1..=path.len())
            .rev()
            .map(|k| path[..k].join("::"))
            .find(|m| modules.contains_key(m))
    };
    let mut edges = BTreeMap::new();
    for (m, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let code: String = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let me: Vec<String> = if m.is_empty() {
            vec![]
        } else {
            m.split("::").map(String::from).collect()
        };
        let parent = &me[..me.len().saturating_sub(1)];
        let mut to = BTreeSet::new();
        let targets = paths_after(&code, "crate").into_iter().chain(
            paths_after(&code, "super")
                .into_iter()
                .map(|p| parent.iter().cloned().chain(p).collect()),
        );
        for path in targets {
            if let Some(t) = resolve(&path) {
                let ancestor = t.is_empty() || m.starts_with(&format!("{t}::"));
                if &t != m && !ancestor {
                    to.insert(t);
                }
            }
        }
        edges.insert(m.clone(), to);
    }
    edges
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn the_path_reader_finds_crate_and_super_paths() {
    let p = paths_after(
        "use crate::dag::{Input, Stage};\nlet x = super::pairs::read(); mycrate::x; crate::table::col_str",
        "crate",
    );
    assert_eq!(
        p,
        [
            vec!["dag", "Input"],
            vec!["dag", "Stage"],
            vec!["table", "col_str"]
        ]
    );
    assert_eq!(
        paths_after("super::pairs::read()", "super"),
        [vec!["pairs", "read"]]
    );
}

#[test]
fn a_cycle_is_found() {
    let e: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(cycles(&e), [vec!["a", "b", "c"]]);
}

#[test]
fn no_two_modules_reach_each_other() {
    let edges = module_graph();
    assert!(
        edges.contains_key("stages::evaluate") && edges.len() > 40,
        "{edges:?}"
    );
    assert!(
        edges["stages::features"].contains("images"),
        "{:?}",
        edges["stages::features"]
    );
    let found = cycles(&edges);
    let shown: Vec<String> = found
        .iter()
        .map(|c| {
            let links: Vec<String> = c
                .iter()
                .flat_map(|a| {
                    edges[a]
                        .iter()
                        .filter(|b| c.contains(b))
                        .map(move |b| format!("{a} → {b}"))
                })
                .collect();
            format!("{{{}}}: {}", c.join(", "), links.join("; "))
        })
        .collect();
    assert!(found.is_empty(), "module cycles:\n{}", shown.join("\n"));
}
