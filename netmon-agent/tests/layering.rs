//! The agent's module graph stays layered (see docs/design.md, "Layering").
//!
//! Reads `src/**/*.rs`, drops comments, string literals and every
//! `#[cfg(test)]` item (and the files of `#[cfg(test)] mod x;`), and collects
//! each module's references to others: `crate::a::b` paths (inside `use`
//! trees too) and `super::` paths that leave the module. A node is a
//! top-level module, or for the subtrees in [`SUBTREES`] one of their
//! children (`collect::system`, `store::record`); the crate root (lib.rs) is
//! `crate`. Then it checks:
//! - no cycle between top-level modules (a subtree counts as one), and each
//!   uses only modules of lower rows of [`LAYERS`] (the picture in
//!   docs/design.md);
//! - no cycle between the children of a subtree (its mod.rs is the subtree's
//!   face, which its children use and which declares them, so edges between
//!   a child and its own parent are not counted);
//! - nothing under [`LOWER`] imports [`UPPER`], and [`LEAVES`] import nothing
//!   of the crate.
//!
//! An edge that cannot go yet is listed in [`EXCEPTIONS`] with its reason;
//! an exception that no longer matches an edge fails too, so the list only
//! shrinks.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

/// The top-level modules by layer, top first, as drawn in docs/design.md
/// ("Layering"): a module uses only modules of lower rows (`crate` is
/// lib.rs). `hub` (`netmon-agent hub`, the receiver of many agents'
/// pushes) is a program beside the agent: it uses `api`'s error types,
/// `store`, `keys` and `units`, and nothing uses it but main.rs.
const LAYERS: &[&[&str]] = &[
    &["crate"],
    &["agent", "hub"],
    &["check", "privileges", "outbound"],
    &["api"],
    &["config"],
    &["metrics", "store"],
    &["alerts", "push"],
    &["collect"],
    &["snapshot"],
    &["ebpf"],
    &["traffic"],
    &[
        "ifaces",
        "keys",
        "rates",
        "lru",
        "logging",
        "units",
        "shutdown",
        "errors",
        "exposition",
        "http_post",
    ],
];
/// Subtrees whose children are nodes of their own.
const SUBTREES: &[&str] = &["collect", "store", "ebpf", "api", "alerts", "push"];
/// Layers below the API and configuration...
const LOWER: &[&str] = &["collect", "store", "ebpf", "units", "alerts", "push"];
/// ...which must not use these.
const UPPER: &[&str] = &["api", "metrics", "config"];
/// Modules that use nothing of the crate.
const LEAVES: &[&str] = &["units", "shutdown", "errors", "exposition", "http_post"];
/// `(from, to, reason)`: edges allowed for now, between nodes.
const EXCEPTIONS: &[(&str, &str, &str)] = &[];

type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn module_graph_is_layered() {
    // Another tree can be checked (e.g. an older commit's, to see the test
    // fail): NETMON_LAYERING_SRC=/path/to/netmon-agent/src.
    let src = std::env::var_os("NETMON_LAYERING_SRC").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        Into::into,
    );
    let graph = module_graph(&src);
    let mut problems = Vec::new();
    let used: std::cell::RefCell<BTreeSet<(String, String)>> = Default::default();
    let allowed = |from: &str, to: &str| {
        let hit = EXCEPTIONS.iter().any(|&(f, t, _)| f == from && t == to);
        if hit {
            used.borrow_mut().insert((from.to_owned(), to.to_owned()));
        }
        hit
    };

    // Top level: collapse subtrees.
    let mut top = Graph::new();
    for (from, tos) in &graph {
        top.entry(top_of(from).to_owned()).or_default();
        for to in tos {
            let (f, t) = (top_of(from), top_of(to));
            if f != t && !allowed(from, to) {
                top.entry(f.to_owned()).or_default().insert(t.to_owned());
            }
        }
    }
    // `cargo test --test layering -- --nocapture` shows what uses what.
    for (from, tos) in &top {
        println!(
            "{from} -> {}",
            tos.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    for c in cycles(&top) {
        problems.push(format!("top-level cycle {}", explain(&c, &graph, true)));
    }
    // Layers: every edge goes down.
    let row = |m: &str| LAYERS.iter().position(|r| r.contains(&m));
    for (from, tos) in &top {
        let Some(f) = row(from) else {
            problems.push(format!(
                "{from} is in no row of LAYERS (and docs/design.md)"
            ));
            continue;
        };
        for to in tos {
            if row(to).is_some_and(|t| t <= f) {
                problems.push(format!("{from} uses {to}: not in a lower row of LAYERS"));
            }
        }
    }
    // Inside each subtree: siblings only.
    for sub in SUBTREES {
        let mut g = Graph::new();
        for (from, tos) in &graph {
            for to in tos {
                if top_of(from) == *sub
                    && top_of(to) == *sub
                    && from != sub
                    && to != sub
                    && from != to
                    && !allowed(from, to)
                {
                    g.entry(from.clone()).or_default().insert(to.clone());
                }
            }
        }
        for c in cycles(&g) {
            problems.push(format!("cycle in {sub}/ {}", explain(&c, &graph, false)));
        }
    }
    // Direction.
    for (from, tos) in &graph {
        for to in tos {
            let (f, t) = (top_of(from), top_of(to));
            if f == t || allowed(from, to) {
                continue;
            }
            if LOWER.contains(&f) && UPPER.contains(&t) {
                problems.push(format!("{from} uses {to}: {f} is below {t}"));
            }
            if LEAVES.contains(&f) {
                problems.push(format!("{from} uses {to}: {f} is a leaf"));
            }
        }
    }
    for &(f, t, _) in EXCEPTIONS {
        if !used.borrow().contains(&(f.to_owned(), t.to_owned())) {
            problems.push(format!("exception {f} -> {t} is gone: remove it"));
        }
    }
    assert!(
        problems.is_empty(),
        "the module graph is not layered (see docs/design.md, \"Layering\"):\n  {}",
        problems.join("\n  ")
    );
}

/// The parser itself: `#[cfg(test)]` code, comments and strings are not edges.
#[test]
fn parser_sees_only_real_edges() {
    let text = r##"
        use crate::{a::{self, X}, b::c::Y};
        use super::d;
        // use crate::comment;
        /* crate::block */
        const S: &str = "crate::string";
        const R: &str = r#"crate::raw"#;
        fn f<'a>(x: &'a str) -> char { let _ = crate::e::f(x); m::g(); 'x' }
        #[cfg(test)]
        mod tests { use crate::tested; }
        #[cfg(test)]
        mod more;
        struct S { #[cfg(test)] hook: crate::h::H, kept: crate::k::K }
        struct T { a: u8, #[cfg(test)] last: crate::l::L }
        fn g() -> crate::after::A { todo!() }
    "##;
    let (paths, test_mods) = references(&strip(text));
    let mut got: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    got.sort();
    assert_eq!(
        got,
        [
            "@::m::g",
            "crate::a",
            "crate::a::X",
            "crate::after::A",
            "crate::b::c::Y",
            "crate::e::f",
            "crate::k::K",
            "super::d"
        ]
    );
    assert_eq!(test_mods, ["more"]);
}

/// Every non-test module file's outgoing edges, by node.
fn module_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    walk(src, &mut files);
    files.sort();
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_path(src, f)).collect();
    let mut test_only: BTreeSet<Vec<String>> = BTreeSet::new();
    let mut parsed = Vec::new();
    for file in &files {
        let module = module_path(src, file);
        let (paths, test_mods) = references(&strip(&fs::read_to_string(file).unwrap()));
        for m in test_mods {
            let mut child = module.clone();
            child.push(m);
            test_only.insert(child);
        }
        parsed.push((module, paths));
    }
    let mut graph = Graph::new();
    for (module, paths) in parsed {
        if module.first().is_some_and(|m| m == "main") {
            continue; // the binary: it uses the library by its name, from above
        }
        if test_only.iter().any(|t| module.starts_with(t)) {
            continue;
        }
        let from = node(&module);
        let entry = graph.entry(from.clone()).or_default();
        for path in paths {
            let Some(target) = resolve(&module, &path) else {
                continue;
            };
            if path[0] == "@" && !modules.contains(&target[..module.len() + 1]) {
                continue; // std::, a crate, a type or an enum variant
            }
            // The longest known module that prefixes the path.
            let target: Vec<String> = (0..=target.len())
                .rev()
                .map(|n| target[..n].to_vec())
                .find(|p| p.is_empty() || modules.contains(p))
                .unwrap();
            let to = node(&target);
            if to != from {
                entry.insert(to);
            }
        }
    }
    graph
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/collect/latency/mod.rs` -> `[collect, latency]`; lib.rs -> `[]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// A path as written in `module`, made absolute (without `crate`); `None`
/// when it does not name the crate's modules.
fn resolve(module: &[String], path: &[String]) -> Option<Vec<String>> {
    match path.first().map(String::as_str) {
        Some("crate") => Some(path[1..].to_vec()),
        Some("@") => Some(module.iter().chain(&path[1..]).cloned().collect()),
        Some("super") => {
            let mut base = module.to_vec();
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
            base.extend(rest.iter().cloned());
            Some(base)
        }
        _ => None,
    }
}

fn node(module: &[String]) -> String {
    match module {
        [] => "crate".to_owned(),
        [top, child, ..] if SUBTREES.contains(&top.as_str()) => format!("{top}::{child}"),
        [top, ..] => top.clone(),
    }
}

fn top_of(node: &str) -> &str {
    node.split("::").next().unwrap()
}

/// The strongly connected components of `g` with more than one node: each
/// is one or more cycles.
fn cycles(g: &Graph) -> Vec<BTreeSet<String>> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_owned()];
        while let Some(n) = todo.pop() {
            for next in g.get(&n).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> = g.keys().map(|n| (n, reach(n))).collect();
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for (n, r) in &reaches {
        if !r.contains(*n) || out.iter().any(|c| c.contains(*n)) {
            continue;
        }
        let component = r
            .iter()
            .filter(|m| reaches.get(m).is_some_and(|rm| rm.contains(*n)))
            .cloned()
            .collect();
        out.push(component);
    }
    out
}

/// The node edges inside a component (`{a, b}`: `a::x -> b, b -> a::y`).
fn explain(component: &BTreeSet<String>, graph: &Graph, collapse: bool) -> String {
    let key = |n: &str| {
        if collapse {
            top_of(n).to_owned()
        } else {
            n.to_owned()
        }
    };
    let edges: Vec<String> = graph
        .iter()
        .flat_map(|(f, ts)| ts.iter().map(move |t| (f, t)))
        .filter(|(f, t)| {
            key(f) != key(t) && component.contains(&key(f)) && component.contains(&key(t))
        })
        .map(|(f, t)| format!("{f} -> {t}"))
        .collect();
    format!(
        "{{{}}}: {}",
        component.iter().cloned().collect::<Vec<_>>().join(", "),
        edges.join(", ")
    )
}

/// Removes comments and the contents of string and char literals.
fn strip(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && matches!(next, Some('"' | '#'))
            && !b
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                i += if b[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && next == Some('\\') {
            i += 2;
            while i < b.len() && b[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else if c == '\'' && b.get(i + 2) == Some(&'\'') {
            i += 3;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The paths in stripped source that start with `crate::` or `super::`
/// (use trees expanded), outside `#[cfg(test)]` items; and the names of
/// `#[cfg(test)] mod x;` declarations.
fn references(text: &str) -> (Vec<Vec<String>>, Vec<String>) {
    let tokens = tokenize(text);
    let mut paths = Vec::new();
    let mut test_mods = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i] == "#" && is_cfg_test(&tokens[i..]) {
            // Skip the attribute, further attributes, then the item.
            i += 1 + group_len(&tokens[i + 1..]);
            while tokens.get(i).is_some_and(|t| t == "#") {
                i += 1 + group_len(&tokens[i + 1..]);
            }
            if tokens.get(i).is_some_and(|t| t == "mod")
                && tokens.get(i + 2).is_some_and(|t| t == ";")
            {
                test_mods.push(tokens[i + 1].clone());
            }
            // The item ends at `;`, its block, or (a field) `,` or the
            // `}` closing the enclosing block, which is not the item's.
            let mut depth = 0usize;
            while i < tokens.len() {
                match tokens[i].as_str() {
                    "(" | "[" => depth += 1,
                    ")" | "]" => depth = depth.saturating_sub(1),
                    ";" | "," | "{" | "}" if depth == 0 => break,
                    _ => {}
                }
                i += 1;
            }
            match tokens.get(i).map(String::as_str) {
                Some("{") => i += group_len(&tokens[i..]),
                Some("}") | None => {}
                Some(_) => i += 1,
            }
            continue;
        }
        let t = tokens[i].as_str();
        let prev_is_sep = i > 0 && tokens[i - 1] == "::";
        if (t == "crate" || t == "super") && !prev_is_sep {
            i = use_tree(&tokens, i, Vec::new(), &mut paths);
            continue;
        }
        // A bare `child::x`, as lib.rs and mod.rs files name their own
        // modules: marked `@`, resolved if it names one.
        if is_ident(t)
            && !prev_is_sep
            && t != "self"
            && tokens.get(i + 1).is_some_and(|n| n == "::")
        {
            i = use_tree(&tokens, i, vec!["@".to_owned()], &mut paths);
            continue;
        }
        i += 1;
    }
    (paths, test_mods)
}

/// Parses a path or use tree at `tokens[i]`, pushing every full path; returns
/// the index after it.
fn use_tree(
    tokens: &[String],
    mut i: usize,
    mut prefix: Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    loop {
        let t = &tokens[i];
        if t == "{" {
            i += 1;
            loop {
                if tokens[i] == "}" {
                    return i + 1;
                }
                i = use_tree(tokens, i, prefix.clone(), out);
                if tokens[i] == "," {
                    i += 1;
                }
            }
        }
        if t == "*" {
            prefix.push(t.clone());
            out.push(prefix);
            return i + 1;
        }
        if !is_ident(t) {
            if prefix.len() > 1 {
                out.push(prefix);
            }
            return i;
        }
        if t != "self" {
            prefix.push(t.clone());
        }
        i += 1;
        if tokens.get(i).is_some_and(|t| t == "::") && tokens.get(i + 1).is_some_and(|t| t != "<") {
            i += 1;
        } else {
            // `pub(crate)` and `pub(super)` name no module.
            if prefix.len() > 1 {
                out.push(prefix);
            }
            return i;
        }
    }
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// `# [ cfg ( test ) ]` (also `cfg(all(test, ...))`).
fn is_cfg_test(tokens: &[String]) -> bool {
    let n = group_len(&tokens[1..]);
    let attr: Vec<&str> = tokens[1..1 + n].iter().map(String::as_str).collect();
    attr.get(1) == Some(&"cfg") && attr.contains(&"test") && !attr.contains(&"not")
}

/// The length of the bracketed group starting at `tokens[0]`.
fn group_len(tokens: &[String]) -> usize {
    let mut depth = 0i32;
    for (n, t) in tokens.iter().enumerate() {
        match t.as_str() {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => depth -= 1,
            _ => {}
        }
        if depth == 0 {
            return n + 1;
        }
    }
    tokens.len()
}

fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            let mut s = String::from(c);
            while let Some(&n) = chars.peek() {
                if n.is_alphanumeric() || n == '_' {
                    s.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(s);
        } else if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            out.push("::".to_owned());
        } else if !c.is_whitespace() {
            out.push(c.to_string());
        }
    }
    out
}
