//! The crate's package (`cargo package`, run by `.ci/run`) is an allow-list, `include` in
//! Cargo.toml: it holds every file the build reads (the sources, the templates, the static
//! files, whatever `include_str!`/`include_bytes!` names) and no key, certificate, `.env`,
//! session data, test fixture, benchmark, fuzz target or deployment file.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// `cargo package --list`: the package's files, as paths relative to the crate root.
fn package_list() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["package", "--list", "--locked", "--allow-dirty"])
        .args(["--package", env!("CARGO_PKG_NAME")])
        .current_dir(ROOT)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cargo package --list failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Every file under `dir` (relative to the crate root), recursively.
fn files_under(dir: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![Path::new(ROOT).join(dir)];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

/// `path` relative to the crate root, `/`-separated, with `..` folded.
fn relative(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    let inside = path.strip_prefix(ROOT).unwrap();
    for component in inside.components() {
        match component {
            Component::ParentDir => {
                assert!(parts.pop().is_some(), "{} leaves the crate", path.display());
            }
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    parts.join("/")
}

/// The string literal that opens `text` (after blanks), if any.
fn leading_literal(text: &str) -> Option<&str> {
    let text = text.trim_start().strip_prefix('"')?;
    text.find('"').map(|end| &text[..end])
}

/// The files the build reads: every Rust source under `src/`, each file an
/// `include_str!`/`include_bytes!` names (relative to the file naming it), each askama
/// `#[template(path = "…")]`, and every template under `templates/`.
fn files_the_build_needs() -> BTreeSet<String> {
    let mut needed = BTreeSet::new();
    for file in files_under("src") {
        if file.extension().is_none_or(|extension| extension != "rs") {
            continue;
        }
        needed.insert(relative(&file));
        let source = std::fs::read_to_string(&file).unwrap();
        for macro_name in ["include_str!(", "include_bytes!("] {
            for (at, _) in source.match_indices(macro_name) {
                let argument = &source[at + macro_name.len()..];
                let Some(named) = leading_literal(argument) else {
                    panic!(
                        "{}: a {macro_name}…) whose argument is not a plain string literal; \
                         this test cannot tell which file it reads",
                        relative(&file)
                    );
                };
                needed.insert(relative(&file.parent().unwrap().join(named)));
            }
        }
        for (at, _) in source.match_indices("#[template(") {
            let attribute = &source[at..];
            let attribute = &attribute[..attribute.find(")]").unwrap()];
            if let Some(rest) = attribute.split("path =").nth(1) {
                let named = leading_literal(rest).unwrap();
                needed.insert(format!("templates/{named}"));
            }
        }
    }
    // A template may pull in another (`{% include %}`, `{% extends %}`): all of them.
    for file in files_under("templates") {
        if file
            .extension()
            .is_some_and(|extension| extension == "html")
        {
            needed.insert(relative(&file));
        }
    }
    needed
}

/// Why `path` must not be in the package, if it must not.
fn forbidden(path: &str) -> Option<&'static str> {
    const DIRS: [(&str, &str); 8] = [
        ("certs/", "certificates and keys"),
        ("data/", "session data and the session key"),
        ("tests/", "tests and their fixtures"),
        ("bench/", "benchmarks"),
        ("fuzz/", "fuzz targets"),
        ("deploy/", "deployment files"),
        ("examples/", "the example host"),
        ("target/", "build output"),
    ];
    const SECRET_EXTENSIONS: [&str; 12] = [
        "pem", "key", "crt", "cer", "der", "p8", "p12", "pfx", "jks", "csr", "db", "sqlite",
    ];
    if let Some((_, why)) = DIRS.iter().find(|(dir, _)| path.starts_with(dir)) {
        return Some(why);
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    if name.starts_with(".env") {
        return Some("an environment file");
    }
    if name
        .rsplit_once('.')
        .is_some_and(|(_, extension)| SECRET_EXTENSIONS.contains(&extension))
    {
        return Some("a key, certificate or database by its extension");
    }
    let on_disk = Path::new(ROOT).join(path);
    if let Ok(bytes) = std::fs::read(&on_disk)
        && bytes.windows(11).any(|window| window == b"-----BEGIN ")
    {
        return Some("a PEM block (key or certificate)");
    }
    None
}

#[test]
fn the_package_holds_what_the_build_reads_and_no_secret_or_fixture() {
    let listed = package_list();
    assert!(
        listed.contains("Cargo.toml") && listed.contains("src/main.rs"),
        "not a package listing: {listed:?}"
    );

    let missing: Vec<String> = files_the_build_needs()
        .into_iter()
        .filter(|file| !listed.contains(file))
        .collect();
    let refused: Vec<String> = listed
        .iter()
        .filter_map(|file| forbidden(file).map(|why| format!("{file} ({why})")))
        .collect();
    assert!(
        missing.is_empty() && refused.is_empty(),
        "Cargo.toml's `include` (an allow-list) is wrong.\n\
         The package lacks files the build reads (add them): {missing:?}\n\
         The package holds files it must not (keep them out): {refused:?}"
    );
}

#[test]
fn the_package_check_refuses_keys_fixtures_and_env_files() {
    for path in [
        "certs/localhost-key.pem",
        "data/session.key",
        "tests/fixtures/linkedin/userinfo.json",
        "static/server.crt",
        ".env",
        "src/.env.local",
    ] {
        assert!(forbidden(path).is_some(), "{path} passed the check");
    }
    for path in ["src/main.rs", "templates/login.html", "docs/openapi.json"] {
        assert_eq!(forbidden(path), None, "{path} was refused");
    }
}
