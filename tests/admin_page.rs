//! The admin page: its vendored files are the ones `static/vendor/VERSIONS` names, both
//! translations have the same keys (and every key the scripts use), nothing inline would trip the
//! CSP, and the end-to-end flows of `tests/e2e/` pass in real Chromium against the binary.
//!
//! The browser flows need node, `tests/e2e/node_modules` (`npm ci` there; `.ci/run` does it) and
//! Debian's chromium: without them the test fails under `CI` and skips loudly elsewhere.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use sha2::{Digest, Sha256};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "false" && value != "0")
}

/// `static/vendor/VERSIONS`: `file package@version:path licence sha256` a line, `#` comments.
fn versions() -> Vec<(String, String, String, String)> {
    let text = std::fs::read_to_string(root().join("static/vendor/VERSIONS")).expect("VERSIONS");
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields.len(), 4, "file package licence sha256: {line:?}");
            (
                fields[0].to_owned(),
                fields[1].to_owned(),
                fields[2].to_owned(),
                fields[3].to_owned(),
            )
        })
        .collect()
}

#[test]
fn vendored_files_match_their_versions() {
    let listed = versions();
    assert!(
        listed.len() >= 3,
        "Preact/htm and uPlot are listed: {listed:?}"
    );
    for (file, package, licence, sha256) in &listed {
        let bytes = std::fs::read(root().join("static/vendor").join(file))
            .unwrap_or_else(|e| panic!("static/vendor/{file} ({package}) exists: {e}"));
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            *sha256,
            "static/vendor/{file} is {package} as recorded"
        );
        assert!(
            package.contains('@') && !licence.is_empty(),
            "{file}: a package@version and a licence"
        );
    }
    // Every vendored file is accounted for (VERSIONS itself and the folder's README excepted).
    let names: BTreeSet<String> = listed.iter().map(|(file, ..)| file.clone()).collect();
    for entry in std::fs::read_dir(root().join("static/vendor")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name != "VERSIONS" && name != "README.txt" {
            assert!(
                names.contains(&name),
                "static/vendor/{name} is listed in VERSIONS"
            );
        }
    }
}

fn keys(language: &str) -> BTreeSet<String> {
    let path = root().join(format!("static/i18n/{language}.json"));
    let text = std::fs::read_to_string(&path).expect("a translation file");
    let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    value
        .as_object()
        .unwrap_or_else(|| panic!("{} is one object", path.display()))
        .keys()
        .cloned()
        .collect()
}

fn scripts(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            scripts(&path, out);
        } else if path.extension().is_some_and(|e| e == "js") {
            out.push(path);
        }
    }
}

#[test]
fn translations_have_the_same_keys_and_every_key_used() {
    let chinese = keys("zh-CN");
    let english = keys("en");
    assert!(
        chinese.len() > 50,
        "the page is translated: {} keys",
        chinese.len()
    );
    let only_chinese: Vec<_> = chinese.difference(&english).collect();
    let only_english: Vec<_> = english.difference(&chinese).collect();
    assert!(
        only_chinese.is_empty() && only_english.is_empty(),
        "zh-CN.json and en.json differ: only in zh-CN {only_chinese:?}, only in en {only_english:?}"
    );
    // Every literal key the scripts ask for, `t('group.key'`, is there.
    let mut files = Vec::new();
    scripts(&root().join("static/js"), &mut files);
    assert!(files.len() >= 5, "the page's modules: {files:?}");
    let mut missing = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (at, _) in text.match_indices("t('") {
            // `t(` itself, not the end of another name (`get('…')`).
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == '.') {
                continue;
            }
            let rest = &text[at + 3..];
            let key = &rest[..rest.find('\'').unwrap()];
            if key.contains('.') && !chinese.contains(key) {
                missing.push(format!("{}: {key}", file.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys missing from the translations: {missing:?}"
    );
}

#[test]
fn nothing_inline_that_the_csp_would_block() {
    let index = std::fs::read_to_string(root().join("static/index.html")).unwrap();
    assert!(
        index.contains(r#"<link rel="icon" href="data:,">"#),
        "no favicon request"
    );
    for (at, _) in index.match_indices("<script") {
        let tag = &index[at..at + index[at..].find('>').unwrap()];
        assert!(tag.contains("src="), "no inline script: {tag}");
    }
    assert!(!index.contains("<style"), "no <style> block");
    let mut files = Vec::new();
    scripts(&root().join("static/js"), &mut files);
    for file in files.iter().chain([&root().join("static/index.html")]) {
        let text = std::fs::read_to_string(file).unwrap();
        for bad in [" style=", "<style", "eval(", "new Function", "innerHTML"] {
            assert!(!text.contains(bad), "{} has {bad:?}", file.display());
        }
    }
}

/// Why the browser flows cannot run here, if they cannot.
fn missing_tools(e2e: &Path) -> Option<String> {
    let node = Command::new("node").arg("--version").output();
    match node {
        Ok(output) if output.status.success() => {
            let version = String::from_utf8_lossy(&output.stdout);
            let major: u32 = version
                .trim()
                .trim_start_matches('v')
                .split('.')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            if major < 20 {
                return Some(format!("node {} is older than 20", version.trim()));
            }
        }
        _ => return Some("node is not installed".into()),
    }
    if !e2e.join("node_modules/playwright-core").is_dir() {
        return Some("tests/e2e/node_modules is missing: run `npm ci` in tests/e2e".into());
    }
    if !Path::new("/usr/bin/chromium").exists() && std::env::var_os("OUTCALL_CHROMIUM").is_none() {
        return Some("chromium is not installed (/usr/bin/chromium)".into());
    }
    None
}

#[test]
fn browser_flows() {
    let e2e = root().join("tests/e2e");
    if let Some(reason) = missing_tools(&e2e) {
        if in_ci() {
            panic!("the admin page's browser tests cannot run under CI: {reason}");
        }
        eprintln!("SKIPPED the admin page's browser tests: {reason}");
        return;
    }
    let status = Command::new("node")
        .args(["--test", "--test-concurrency=1", "--test-reporter=spec"])
        .arg(&e2e)
        .current_dir(&e2e)
        .env("OUTCALL_BIN", env!("CARGO_BIN_EXE_outcall"))
        .status()
        .expect("node runs");
    assert!(
        status.success(),
        "the browser flows of tests/e2e/ failed (see above; screenshots in target/e2e-screenshots/)"
    );
}
