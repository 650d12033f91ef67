//! Finds where a spec node sits in the YAML text, for error messages.
//!
//! serde gives positions only for errors it raises itself; semantic errors
//! (a duplicate name, a dangling reference) are found after parsing, when
//! spans are gone. The spec is block-style YAML whose nested content always
//! follows its parent, so a forward search for each step of a path
//! (`messages` -> `name: cache_put` -> `fields` -> `name: ttl_ms` -> `type`)
//! lands on the right line. When a step is missing, the position of the
//! last step found is reported: still the right neighbourhood.

/// One step of a path into the spec.
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    /// A mapping key, e.g. `fields`.
    Key(&'a str),
    /// A list item whose `name` is this value.
    Named(&'a str),
    /// The n-th occurrence (0-based) of a list item named this value.
    NamedNth(&'a str, usize),
}

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

/// Finds the position of `path` in `source`.
pub fn locate(source: &str, path: &[Step<'_>]) -> Position {
    let lines: Vec<&str> = source.lines().collect();
    let mut found = Position { line: 1, column: 1 };
    let (mut line, mut col) = (0usize, 0usize);
    for step in path {
        let hit = match *step {
            Step::Key(k) => search(&lines, line, col, |text| find_key(text, k)),
            Step::Named(n) => search(&lines, line, col, |text| find_named(text, n)),
            Step::NamedNth(n, nth) => {
                let mut at = Some((line, col));
                for i in 0..=nth {
                    at = at.and_then(|(l, c)| {
                        let start = if i == 0 { c } else { c + 1 };
                        search(&lines, l, start, |text| find_named(text, n))
                    });
                }
                at
            }
        };
        match hit {
            Some((l, c)) => {
                line = l;
                col = c;
                found = Position {
                    line: l + 1,
                    column: c + 1,
                };
            }
            None => break,
        }
    }
    found
}

/// Searches from (line, col) onward; `find` returns a column in a line.
fn search(
    lines: &[&str],
    line: usize,
    col: usize,
    find: impl Fn(&str) -> Option<usize>,
) -> Option<(usize, usize)> {
    for (i, text) in lines.iter().enumerate().skip(line) {
        let text = strip_comment(text);
        let start = if i == line { col.min(text.len()) } else { 0 };
        if let Some(c) = text.get(start..).and_then(&find) {
            return Some((i, start + c));
        }
    }
    None
}

fn strip_comment(text: &str) -> &str {
    if text.trim_start().starts_with('#') {
        ""
    } else {
        text
    }
}

/// Column of `key:` where it begins a key (line start, after `- `, `{` or `,`).
fn find_key(text: &str, key: &str) -> Option<usize> {
    let pat = format!("{key}:");
    let mut from = 0;
    while let Some(i) = text[from..].find(&pat) {
        let at = from + i;
        let before = text[..at].trim_end();
        if before.is_empty()
            || before.ends_with('-')
            || before.ends_with('{')
            || before.ends_with(',')
        {
            return Some(at);
        }
        from = at + pat.len();
    }
    None
}

/// Column of `name: value` where value is a whole scalar.
fn find_named(text: &str, name: &str) -> Option<usize> {
    let at = find_key(text, "name")?;
    let rest = text[at + "name:".len()..].trim_start();
    let value = rest
        .split(|c: char| c == ',' || c == '}' || c.is_whitespace())
        .next()
        .unwrap_or("")
        .trim_matches(|c| c == '"' || c == '\'');
    (value == name).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "messages:\n  - name: auth\n    fields:\n      - { name: token, type: string }\n  - name: ok\n    fields: []\n";

    #[test]
    fn finds_nested_flow_item_and_key() {
        let p = locate(
            SRC,
            &[
                Step::Key("messages"),
                Step::Named("auth"),
                Step::Key("fields"),
                Step::Named("token"),
                Step::Key("type"),
            ],
        );
        assert_eq!(
            p,
            Position {
                line: 4,
                column: 24
            }
        );
    }

    #[test]
    fn missing_step_reports_last_found() {
        let p = locate(
            SRC,
            &[
                Step::Key("messages"),
                Step::Named("ok"),
                Step::Key("examples"),
            ],
        );
        assert_eq!(p, Position { line: 5, column: 5 });
    }
}
