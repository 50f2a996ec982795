//! The documentation stays true to itself: README.md is the short first read and docs/ holds
//! the rest, so every link between them (and into PROTOCOL.md's sections) must land on a file
//! and a heading that exist, the README must keep pointing at every docs file, and the
//! configuration reference must list exactly the keys `src/config.rs` accepts, with the
//! defaults `configuration.toml` shows. Pure file reads: no sockets, no server.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The README is what a student reads first; past this it is no longer a first read, and the
/// detail belongs in a file under docs/.
const README_MAX_BYTES: usize = 12_000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every markdown file of the documentation, relative to the repository root.
fn documentation_files() -> Vec<String> {
    let mut files = vec![
        "README.md".to_string(),
        "PROTOCOL.md".to_string(),
        "ARCHITECTURE.md".to_string(),
    ];
    files.extend(docs_dir_files());
    files
}

fn docs_dir_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|entry| {
            entry
                .expect("docs/ entry")
                .file_name()
                .into_string()
                .expect("UTF-8 name")
        })
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    files.sort();
    files
}

/// The lines of a markdown text outside fenced code blocks.
fn prose_lines(text: &str) -> Vec<&str> {
    let mut in_fence = false;
    text.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                in_fence = !in_fence;
                return false;
            }
            !in_fence
        })
        .collect()
}

/// The anchor GitHub gives a heading: lower case, punctuation other than `-` and `_` dropped,
/// spaces made hyphens; a repeated heading gets `-1`, `-2`, ...
fn heading_anchors(text: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    for line in prose_lines(text) {
        let Some(title) = line.strip_prefix('#') else {
            continue;
        };
        let title = title.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let slug: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut anchor = slug.clone();
        let mut n = 0;
        while anchors.contains(&anchor) {
            n += 1;
            anchor = format!("{slug}-{n}");
        }
        anchors.insert(anchor);
    }
    anchors
}

/// Targets of the inline links `[text](target)` of a markdown text, outside code blocks.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose_lines(text) {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            targets.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    targets
}

fn is_external(target: &str) -> bool {
    target.starts_with("http://") || target.starts_with("https://") || target.starts_with("mailto:")
}

/// `base/../x` and `base/./x` made plain, so a resolved link compares with a file name.
fn normalize(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::CurDir => {}
            other => parts.push(other.as_os_str().to_string_lossy().into_owned()),
        }
    }
    parts.join("/")
}

#[test]
fn every_relative_link_in_the_documentation_lands_on_a_file_and_heading_that_exist() {
    let mut broken = Vec::new();
    for file in documentation_files() {
        let text = read(&file);
        let dir = Path::new(&file).parent().unwrap_or(Path::new(""));
        for target in link_targets(&text) {
            if is_external(&target) {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let linked = if path.is_empty() {
                file.clone()
            } else {
                normalize(&dir.join(path))
            };
            let on_disk = root().join(&linked);
            if !on_disk.exists() {
                broken.push(format!("{file}: ({target}): no file {linked}"));
                continue;
            }
            if let Some(anchor) = anchor {
                if !heading_anchors(&read(&linked)).contains(anchor) {
                    broken.push(format!(
                        "{file}: ({target}): {linked} has no heading #{anchor}"
                    ));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_and_the_docs_index_link_every_docs_file() {
    let expected: BTreeSet<String> = docs_dir_files().into_iter().collect();
    for (index, dir) in [("README.md", ""), ("docs/README.md", "docs")] {
        let linked: BTreeSet<String> = link_targets(&read(index))
            .iter()
            .filter(|t| !is_external(t))
            .map(|t| normalize(&Path::new(dir).join(t.split('#').next().unwrap_or(""))))
            .collect();
        let missing: Vec<&String> = expected
            .iter()
            .filter(|f| !linked.contains(*f) && f.as_str() != index)
            .collect();
        assert!(missing.is_empty(), "{index} links none of {missing:?}");
    }
}

#[test]
fn the_readme_stays_short_enough_to_be_read_first() {
    let size = read("README.md").len();
    assert!(
        size <= README_MAX_BYTES,
        "README.md is {size} bytes, over {README_MAX_BYTES}: keep it to what a newcomer needs \
         and move the detail to a file under docs/ (linked from its \"Where to read more\")"
    );
}

/// The keys of `configuration.toml`: `key = value` lines, commented out or not.
fn configuration_toml_defaults() -> Vec<(String, String)> {
    read("configuration.toml")
        .lines()
        .filter_map(|line| {
            let line = line.strip_prefix("# ").unwrap_or(line);
            let (key, value) = line.split_once(" = ")?;
            key.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_')
                .then(|| (key.to_string(), value.to_string()))
        })
        .collect()
}

/// The field names of `struct Config` in src/config.rs, which are its keys.
fn config_rs_keys() -> BTreeSet<String> {
    let source = read("src/config.rs");
    let body = source
        .split_once("pub struct Config {")
        .and_then(|(_, rest)| rest.split_once("\n}"))
        .map(|(body, _)| body)
        .expect("src/config.rs has `pub struct Config { ... }`");
    body.lines()
        .filter_map(|line| line.trim().strip_prefix("pub ")?.split_once(':'))
        .map(|(name, _)| name.to_string())
        .collect()
}

#[test]
fn the_configuration_reference_lists_every_key_with_the_default_configuration_toml_shows() {
    let reference = read("docs/configuration.md");
    let rows: Vec<(String, String)> = reference
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let key = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let default = cells.get(2)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((key.to_string(), default.to_string()))
        })
        .collect();
    let toml = configuration_toml_defaults();
    let row_keys: BTreeSet<String> = rows.iter().map(|(k, _)| k.clone()).collect();
    let toml_keys: BTreeSet<String> = toml.iter().map(|(k, _)| k.clone()).collect();
    let struct_keys = config_rs_keys();
    assert_eq!(
        row_keys, struct_keys,
        "docs/configuration.md's table against the fields of src/config.rs's Config"
    );
    assert_eq!(
        toml_keys, struct_keys,
        "configuration.toml's keys against src/config.rs's Config"
    );
    for (key, default) in &rows {
        let shown = &toml
            .iter()
            .find(|(k, _)| k == key)
            .expect("checked above")
            .1;
        assert_eq!(
            default, shown,
            "default of `{key}`: docs/configuration.md against configuration.toml"
        );
    }
}

/// The paths ARCHITECTURE.md names in backticks (`src/...`, `crates/...`, `tests/...`,
/// `docs/...`), each up to its first space.
fn architecture_paths() -> Vec<String> {
    let text = read("ARCHITECTURE.md");
    let mut paths = Vec::new();
    for quoted in text.split('`').skip(1).step_by(2) {
        for word in quoted.split([' ', ',']) {
            if ["src/", "crates/", "tests/", "docs/"]
                .iter()
                .any(|top| word.starts_with(top))
            {
                paths.push(word.to_string());
            }
        }
    }
    paths
}

#[test]
fn every_path_the_architecture_map_names_exists() {
    let paths = architecture_paths();
    assert!(paths.len() >= 20, "too few paths found: {paths:?}");
    let missing: Vec<&String> = paths
        .iter()
        .filter(|path| !root().join(path.as_str()).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names paths that do not exist: {missing:?}"
    );
}
