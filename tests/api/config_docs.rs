//! The configuration reference agrees with clap, the one source: every variable of
//! `Config::command()` (its groups included) is in `.env.example` and in the table of
//! `docs/configuration.md` with clap's default, and neither names a variable clap does not know.

use std::collections::BTreeMap;

use clap::CommandFactory;
use linkedin_token_exchange::server::config::Config;

/// Each variable clap reads, with its default (`None` when it has none).
fn clap_variables() -> BTreeMap<String, Option<String>> {
    let command = Config::command();
    let variables: BTreeMap<String, Option<String>> = command
        .get_arguments()
        .filter_map(|arg| {
            let env = arg.get_env()?.to_string_lossy().into_owned();
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|value| value.to_string_lossy().into_owned())
                .collect();
            Some((env, (!defaults.is_empty()).then(|| defaults.join(","))))
        })
        .collect();
    assert!(
        variables.contains_key("BIND") && variables.contains_key("RUST_LOG"),
        "the walk over clap's arguments missed the flattened groups: {variables:?}"
    );
    variables
}

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// `.env.example`'s settings, `#VAR=value` or `VAR=value`: each variable once, with its value.
fn env_example() -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for line in read(".env.example").lines() {
        let line = line.trim();
        let setting = line.strip_prefix('#').unwrap_or(line);
        let Some((name, value)) = setting.split_once('=') else {
            continue;
        };
        let is_name = !name.is_empty()
            && name.starts_with(|c: char| c.is_ascii_uppercase())
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if is_name {
            let earlier = found.insert(name.to_owned(), value.to_owned());
            assert!(earlier.is_none(), ".env.example sets {name} twice");
        }
    }
    found
}

/// The rows of `docs/configuration.md`'s variable table: each variable once, with its
/// default cell.
fn reference_table() -> BTreeMap<String, String> {
    let text = read("docs/configuration.md");
    let mut found = BTreeMap::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.starts_with("| variable | default | meaning |") {
            in_table = true;
            continue;
        }
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        if !in_table || line.starts_with("| ---") {
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`');
        let earlier = found.insert(name.to_owned(), cells[2].to_owned());
        assert!(
            earlier.is_none(),
            "docs/configuration.md has two rows for {name}"
        );
    }
    assert!(
        !found.is_empty(),
        "docs/configuration.md has no variable table"
    );
    found
}

#[test]
fn every_variable_clap_reads_is_in_env_example_with_clap_s_default() {
    let example = env_example();
    let mut wrong = Vec::new();
    for (name, default) in clap_variables() {
        let expected = default.unwrap_or_default();
        match example.get(&name) {
            None => wrong.push(format!("{name}: missing (expected `#{name}={expected}`)")),
            Some(value) if *value != expected => wrong.push(format!(
                "{name}: `{value}`, but clap's default is `{expected}` (examples go in the comment)"
            )),
            Some(_) => {}
        }
    }
    assert!(
        wrong.is_empty(),
        ".env.example disagrees with clap:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_variable_clap_reads_has_a_reference_row_with_clap_s_default() {
    let table = reference_table();
    let mut wrong = Vec::new();
    for (name, default) in clap_variables() {
        let Some(cell) = table.get(&name) else {
            wrong.push(format!("{name}: no row"));
            continue;
        };
        match default {
            Some(default) if !cell.starts_with(&format!("`{default}`")) => wrong.push(format!(
                "{name}: the default cell `{cell}` does not start with clap's `{default}`"
            )),
            None if !cell.starts_with("unset") => wrong.push(format!(
                "{name}: clap has no default, so the cell starts with \"unset\" (then what \
                 that means), not `{cell}`"
            )),
            _ => {}
        }
    }
    assert!(
        wrong.is_empty(),
        "docs/configuration.md disagrees with clap:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn neither_env_example_nor_the_reference_names_a_variable_clap_does_not_read() {
    let known = clap_variables();
    let unknown: Vec<String> = env_example()
        .into_keys()
        .map(|name| (".env.example", name))
        .chain(
            reference_table()
                .into_keys()
                .map(|name| ("docs/configuration.md", name)),
        )
        .filter(|(_, name)| !known.contains_key(name))
        .map(|(file, name)| format!("{file}: {name}"))
        .collect();
    assert!(
        unknown.is_empty(),
        "unknown to clap:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn every_variable_has_help_text_in_dash_dash_help() {
    let command = Config::command();
    let silent: Vec<String> = command
        .get_arguments()
        .filter(|arg| arg.get_env().is_some())
        .filter(|arg| {
            arg.get_help()
                .is_none_or(|help| help.to_string().trim().is_empty())
        })
        .map(|arg| arg.get_id().to_string())
        .collect();
    assert!(silent.is_empty(), "no help text: {silent:?}");
}
