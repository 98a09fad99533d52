//! The README's config reference can't drift from the code: for every table,
//! the keys the loader accepts (read from its own "unknown field" error) are
//! exactly the keys the README's table for it lists.

use std::collections::BTreeSet;
use std::path::Path;

use mailferry::config::Config;

/// The keys the loader accepts in `table`, from its refusal of a bogus key.
fn accepted(table: &str) -> BTreeSet<String> {
    let text = format!("{table}\nmailferry_bogus_key = 1\n");
    let err = Config::from_str(&text, Path::new("probe.toml"))
        .expect_err("a bogus key must be refused")
        .to_string();
    // serde says "expected `a`", "expected `a` or `b`" or "expected one of `a`, `b`, …".
    let list = err
        .split("expected ")
        .nth(1)
        .unwrap_or_else(|| panic!("no key list in: {err}"));
    let list = list.strip_prefix("one of ").unwrap_or(list);
    list.split(", ")
        .flat_map(|k| k.split(" or "))
        .map(|k| k.trim().trim_matches('`').to_string())
        .collect()
}

/// The keys listed in the README table under the heading `### {heading}`.
fn documented(readme: &str, heading: &str) -> BTreeSet<String> {
    let start = readme
        .find(&format!("### {heading}"))
        .unwrap_or_else(|| panic!("README has no section {heading:?}"));
    readme[start..]
        .lines()
        .skip(1)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator rows
        .filter_map(|row| row.split('|').nth(1))
        .map(|cell| cell.trim().trim_matches('`').to_string())
        .collect()
}

#[test]
fn readme_config_reference_matches_the_loader() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for (table, heading) in [
        ("[ledger]", "`[ledger]`"),
        ("[daemon]", "`[daemon]`"),
        ("[[source]]", "`[[source]]` (POP3) and `[[target]]` (IMAP)"),
        ("[[target]]", "`[[source]]` (POP3) and `[[target]]` (IMAP)"),
        ("[[route]]", "`[[route]]`"),
    ] {
        assert_eq!(
            documented(&readme, heading),
            accepted(table),
            "README section for {table}"
        );
    }
}
