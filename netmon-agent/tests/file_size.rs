//! No Rust source file of the workspace holds more than [`LIMIT`] lines of
//! non-test code: a file that grows past it mixes responsibilities and is
//! split (issue 13).
//!
//! Reads every `.rs` file under the crates' `src/` (netmon-agent,
//! netmon-common, netmon-ebpf, xtask) and `netmon-agent/benches/`, and
//! counts its lines (blank and comment lines included) outside
//! `#[cfg(test)]` items; files declared only by a `#[cfg(test)] mod x;`
//! (and everything under them) count nothing.
//!
//! A file that cannot be split yet is listed in [`EXCEPTIONS`] with its
//! reason; an exception whose file no longer exceeds the limit (or no
//! longer exists) fails too, so the list only shrinks.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

/// Most lines of non-test code in one file.
const LIMIT: usize = 800;
/// Where the sources are, from the workspace root.
const ROOTS: &[&str] = &[
    "netmon-agent/src",
    "netmon-agent/benches",
    "netmon-common/src",
    "netmon-ebpf/src",
    "xtask/src",
];
/// `(file from the workspace root, reason)`: files over the limit for now.
const EXCEPTIONS: &[(&str, &str)] = &[];

#[test]
fn no_file_holds_too_much_non_test_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut problems = Vec::new();
    let mut over = BTreeSet::new();
    let mut sizes = Vec::new();
    for dir in ROOTS {
        let mut files = Vec::new();
        walk(&root.join(dir), &mut files);
        files.sort();
        let test_only = test_only_files(&files);
        for file in &files {
            if test_only.iter().any(|t| file.starts_with(t)) {
                continue;
            }
            let name = file
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let lines = non_test_lines(&fs::read_to_string(file).unwrap());
            sizes.push((lines, name.clone()));
            let excepted = EXCEPTIONS.iter().any(|(f, _)| *f == name);
            if lines > LIMIT {
                over.insert(name.clone());
                if !excepted {
                    problems.push(format!(
                        "{name}: {lines} lines of non-test code, over {LIMIT}: split it by \
                         responsibility"
                    ));
                }
            }
        }
    }
    for (file, _) in EXCEPTIONS {
        if !over.contains(*file) {
            problems.push(format!(
                "exception {file} is no longer over {LIMIT} lines (or is gone): remove it"
            ));
        }
    }
    // `cargo test --test file_size -- --nocapture` lists the largest.
    sizes.sort();
    for (lines, name) in sizes.iter().rev().take(15) {
        println!("{lines:5} {name}");
    }
    assert!(problems.is_empty(), "\n  {}", problems.join("\n  "));
}

/// The counter itself: test items (with their attributes), test-only
/// modules' files, and braces or `cfg(test)` inside strings and comments.
#[test]
fn counts_only_non_test_lines() {
    let text = r##"//! Doc.
use std::fmt;

#[cfg(test)]
use std::io;

/// A "}" in a string, a '{' char, r#"{"# in a raw string.
fn f() -> &'static str {
    let _ = '{';
    let _ = b'}';
    let _ = r#"}}"#;
    "} #[cfg(test)] mod x { }"
}

impl S {
    #[cfg(test)]
    #[allow(dead_code)]
    fn only_in_tests() {
        let _ = "{";
    }

    fn kept<'a>(x: &'a str) -> &'a str { x } // #[cfg(test)] in a comment
}

/* #[cfg(test)]
   fn commented_out() {} */
#[cfg(all(test, target_os = "linux"))]
mod linux_tests {
    #[test]
    fn t() {}
}

#[cfg(not(test))]
fn not_test() {}

struct Hooked {
    #[cfg(test)]
    hook: Option<fn()>,
    kept: u32,
    #[cfg(test)]
    last: Vec<(u8, [u8; 2])>
}

#[cfg(test)]
mod tests;
"##;
    // 45 lines; the test items: `use std::io` (2 lines), `only_in_tests` (5),
    // `linux_tests` (5), two fields of `Hooked` (2 each), `mod tests;` (2).
    assert_eq!(text.lines().count(), 45);
    assert_eq!(non_test_lines(text), 45 - 2 - 5 - 5 - 2 - 2 - 2);
    assert_eq!(test_mods(text), ["tests"]);
}

/// Test-only modules are not counted, nor anything under them.
#[test]
fn test_only_modules_are_found_by_their_files() {
    let dir = std::env::temp_dir().join(format!("netmon-file-size-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("a/b")).unwrap();
    let write = |p: &str, text: &str| fs::write(dir.join(p), text).unwrap();
    write("lib.rs", "mod a;\n#[cfg(test)]\nmod t;\n");
    write("t.rs", "");
    write("a/mod.rs", "mod c;\n#[cfg(test)]\nmod b;\n");
    write("a/c.rs", "#[cfg(test)]\nmod tests;\n");
    write("a/b/mod.rs", "");
    let mut files = Vec::new();
    walk(&dir, &mut files);
    let got: BTreeSet<PathBuf> = test_only_files(&files)
        .into_iter()
        .map(|p| p.strip_prefix(&dir).unwrap().to_owned())
        .collect();
    fs::remove_dir_all(&dir).unwrap();
    let want: BTreeSet<PathBuf> = ["t.rs", "t", "a/b.rs", "a/b", "a/c/tests.rs", "a/c/tests"]
        .iter()
        .map(PathBuf::from)
        .collect();
    assert_eq!(got, want);
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The paths (a file `x.rs` and a directory `x/`) of the modules that
/// `files` declare with `#[cfg(test)] mod x;`.
fn test_only_files(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for file in files {
        let mods = test_mods(&fs::read_to_string(file).unwrap());
        if mods.is_empty() {
            continue;
        }
        // The directory holding this module's children.
        let stem = file.file_stem().unwrap().to_string_lossy();
        let parent = file.parent().unwrap();
        let dir = if matches!(&*stem, "mod" | "lib" | "main") {
            parent.to_owned()
        } else {
            parent.join(&*stem)
        };
        for m in mods {
            out.push(dir.join(format!("{m}.rs")));
            out.push(dir.join(m));
        }
    }
    out
}

/// The lines of `text` outside `#[cfg(test)]` items.
fn non_test_lines(text: &str) -> usize {
    let total = text.lines().count();
    let test: usize = test_items(text)
        .iter()
        .map(|&(first, last)| last - first + 1)
        .sum();
    total - test
}

/// The names of `#[cfg(test)] mod x;` declarations in `text`.
fn test_mods(text: &str) -> Vec<String> {
    let code = blank_out(text);
    test_items(text)
        .iter()
        .filter_map(|&(first, last)| {
            let item: Vec<&str> = code.lines().skip(first).take(last - first + 1).collect();
            let item = item.join(" ");
            let tail = item.rsplit(']').next()?.trim();
            let name = tail.strip_prefix("mod ")?.strip_suffix(';')?.trim();
            Some(name.to_owned())
        })
        .collect()
}

/// The first and last line (0-based) of each `#[cfg(test)]` item of
/// `text`: from its first attribute to its closing `}` or `;`.
fn test_items(text: &str) -> Vec<(usize, usize)> {
    let code: Vec<char> = blank_out(text).chars().collect();
    let line_at = |i: usize| code[..i].iter().filter(|c| **c == '\n').count();
    let mut out = Vec::new();
    let mut i = 0;
    while i < code.len() {
        if code[i] != '#' || code.get(i + 1) == Some(&'!') {
            i += 1;
            continue;
        }
        let Some(end) = attribute_end(&code, i) else {
            i += 1;
            continue;
        };
        let attr: String = code[i..end].iter().filter(|c| !c.is_whitespace()).collect();
        let is_test = attr.starts_with("#[cfg(")
            && attr.contains("test")
            && !attr.contains("not(")
            && attr[6..]
                .split(|c: char| !c.is_alphanumeric() && c != '_')
                .any(|w| w == "test");
        if !is_test {
            i = end;
            continue;
        }
        // Further attributes, then the item up to `;` or its braced block.
        let mut j = end;
        loop {
            while j < code.len() && code[j].is_whitespace() {
                j += 1;
            }
            match attribute_end(&code, j) {
                Some(e) if code[j] == '#' => j = e,
                _ => break,
            }
        }
        let last = item_end(&code, j);
        out.push((line_at(i), line_at(last)));
        i = last + 1;
    }
    out
}

/// The last index of the item (or field, or struct-literal field) at
/// `code[j]`: its `;` or `,`, the `}` closing its block, or the character
/// before the `}` that closes the enclosing block (a last field).
fn item_end(code: &[char], mut j: usize) -> usize {
    let mut depth = 0usize;
    while j < code.len() {
        match code[j] {
            '(' | '[' => depth += 1,
            ')' | ']' => depth = depth.saturating_sub(1),
            ';' | ',' if depth == 0 => return j,
            '}' if depth == 0 => return j.saturating_sub(1),
            '{' if depth == 0 => {
                let mut braces = 0usize;
                while j < code.len() {
                    match code[j] {
                        '{' => braces += 1,
                        '}' => {
                            braces -= 1;
                            if braces == 0 {
                                return j;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    code.len() - 1
}

/// The end (exclusive) of the attribute `#[...]` at `code[i]`.
fn attribute_end(code: &[char], i: usize) -> Option<usize> {
    if code.get(i) != Some(&'#') {
        return None;
    }
    let mut j = i + 1;
    while code.get(j).is_some_and(|c| c.is_whitespace()) {
        j += 1;
    }
    if code.get(j) != Some(&'[') {
        return None;
    }
    let mut depth = 0usize;
    while j < code.len() {
        match code[j] {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(j + 1);
                }
            }
            _ => {}
        }
        j += 1;
    }
    None
}

/// `text` with comments and the insides of string and char literals
/// replaced by spaces, line breaks kept (so lines stay where they were).
fn blank_out(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        let prev_ident = i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_');
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                blank(&mut out, b[i]);
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if (c == 'r' || (c == 'b' && next == Some('r')))
            && !prev_ident
            && raw_string_start(&b, i).is_some()
        {
            let (open_end, hashes) = raw_string_start(&b, i).unwrap();
            for _ in i..open_end {
                out.push('"');
            }
            i = open_end;
            while i < b.len() {
                if b[i] == '"' && (0..hashes).all(|k| b.get(i + 1 + k) == Some(&'#')) {
                    for _ in 0..=hashes {
                        out.push('"');
                    }
                    i += 1 + hashes;
                    break;
                }
                blank(&mut out, b[i]);
                i += 1;
            }
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    blank(&mut out, b[i]);
                    i += 1;
                    if i < b.len() {
                        blank(&mut out, b[i]);
                        i += 1;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
            if i < b.len() {
                out.push('"');
                i += 1;
            }
        } else if c == '\'' && char_literal_len(&b, i).is_some() {
            let len = char_literal_len(&b, i).unwrap();
            out.push('\'');
            for _ in 1..len - 1 {
                out.push(' ');
            }
            out.push('\'');
            i += len;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// At `r"`, `r#"`, `br"`...: the index after the opening quote and the
/// number of `#`.
fn raw_string_start(b: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i + if b[i] == 'b' { 2 } else { 1 };
    let mut hashes = 0;
    while b.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (b.get(j) == Some(&'"')).then_some((j + 1, hashes))
}

/// The length of the char literal at `b[i]` (`'x'`, `'\n'`, `'\u{7f}'`),
/// or `None` for a lifetime or label.
fn char_literal_len(b: &[char], i: usize) -> Option<usize> {
    if b.get(i + 1) == Some(&'\\') {
        let close = (i + 2..b.len().min(i + 12)).find(|&j| b[j] == '\'')?;
        return Some(close - i + 1);
    }
    (b.get(i + 2) == Some(&'\'')).then_some(3)
}
