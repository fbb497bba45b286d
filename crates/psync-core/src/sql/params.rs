//! Shell variables in SQL text: `-v name=value` / `\set name value`, written
//! `:name` or `$name` (a string literal, or a number when the value is one) and
//! `:"name"` (a quoted identifier, for a column such as a trait).
//!
//! The text is scanned once: string literals, quoted identifiers, comments and
//! `::` casts are left alone, so `'12:30'` or `x::int` never read as variables.

use std::collections::BTreeMap;

/// Values of the shell's variables, by name.
pub type Vars = BTreeMap<String, String>;

/// A `:name` or `$name` in the text with no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing(pub String);

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the query needs the parameter '{0}': give it with -v {0}=VALUE (or \\set {0} VALUE in the shell)",
            self.0
        )
    }
}

/// Parses one `-v name=value`.
pub fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if is_name(name.trim()) => {
            Ok((name.trim().to_string(), value.to_string()))
        }
        _ => Err(format!(
            "'{s}' is not NAME=VALUE (a name is letters, digits and _, not starting with a digit)"
        )),
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The names of the variables `sql` refers to, in order of first use.
pub fn referenced(sql: &str) -> Vec<String> {
    let mut names = vec![];
    scan(sql, |name, _| {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
        Some(String::new())
    });
    names
}

/// `sql` with every variable replaced by its value; the first one without a
/// value is an error.
pub fn substitute(sql: &str, vars: &Vars) -> Result<String, Missing> {
    let mut missing = None;
    let out = scan(sql, |name, quoted| {
        let Some(value) = vars.get(name) else {
            missing.get_or_insert_with(|| Missing(name.to_string()));
            return None;
        };
        Some(if quoted {
            format!("\"{}\"", value.replace('"', "\"\""))
        } else if is_number(value) {
            value.clone()
        } else {
            format!("'{}'", value.replace('\'', "''"))
        })
    });
    match missing {
        Some(m) => Err(m),
        None => Ok(out),
    }
}

fn is_number(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.chars().filter(|c| *c == '.').count() <= 1
        && digits.chars().any(|c| c.is_ascii_digit())
        // A leading zero makes it an id ("007"), not a number.
        && !(digits.len() > 1 && digits.starts_with('0') && !digits.starts_with("0."))
}

/// Walks `sql`, calling `replace(name, quoted_identifier)` for each variable and
/// splicing in what it returns (`None` keeps the text as it was).
fn scan(sql: &str, mut replace: impl FnMut(&str, bool) -> Option<String>) -> String {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => i = skip_quoted(b, i),
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..].find("*/").map_or(b.len(), |p| i + 2 + p + 2);
            }
            b':' if b.get(i + 1) == Some(&b':') => i += 2,
            b':' | b'$' => {
                let sigil = i;
                let quoted = b[i] == b':' && b.get(i + 1) == Some(&b'"');
                let start = if quoted { i + 2 } else { i + 1 };
                let end = start
                    + b[start..]
                        .iter()
                        .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                        .unwrap_or(b.len() - start);
                let name = &sql[start..end];
                let closed = !quoted || b.get(end) == Some(&b'"');
                if is_name(name) && closed {
                    let stop = if quoted { end + 1 } else { end };
                    if let Some(text) = replace(name, quoted) {
                        out.push_str(&sql[copied..sigil]);
                        out.push_str(&text);
                        copied = stop;
                    }
                    i = stop;
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[copied..]);
    out
}

/// The index just past the quoted text starting at `i` (a doubled quote is part of it).
fn skip_quoted(b: &[u8], i: usize) -> usize {
    let q = b[i];
    let mut j = i + 1;
    while j < b.len() {
        if b[j] == q {
            if b.get(j + 1) == Some(&q) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn replaces_both_spellings_as_literals() {
        let v = vars(&[("profile", "sid_1"), ("n", "10")]);
        assert_eq!(
            substitute(
                "SELECT * FROM t WHERE id = :profile OR id = $profile LIMIT :n",
                &v
            )
            .unwrap(),
            "SELECT * FROM t WHERE id = 'sid_1' OR id = 'sid_1' LIMIT 10"
        );
    }

    #[test]
    fn quotes_values_and_identifiers() {
        let v = vars(&[("who", "o'brien"), ("trait", "Plan \"x\""), ("id", "007")]);
        assert_eq!(
            substitute("SELECT :\"trait\" FROM t WHERE a = :who AND b = :id", &v).unwrap(),
            "SELECT \"Plan \"\"x\"\"\" FROM t WHERE a = 'o''brien' AND b = '007'"
        );
    }

    #[test]
    fn leaves_strings_comments_and_casts_alone() {
        let v = vars(&[]);
        let sql =
            "SELECT '12:30', \"a:b\", x::int -- :nope\n/* $nope */ FROM t WHERE s = 'it''s :x'";
        assert_eq!(substitute(sql, &v).unwrap(), sql);
        assert_eq!(
            substitute("SELECT $1, {'a':1}", &v).unwrap(),
            "SELECT $1, {'a':1}"
        );
    }

    #[test]
    fn a_missing_variable_is_named() {
        let err = substitute("SELECT :profile, :other", &vars(&[("other", "1")])).unwrap_err();
        assert_eq!(err, Missing("profile".into()));
        assert!(err.to_string().contains("-v profile="));
        assert_eq!(referenced("SELECT :a, $b, :\"c\", :a"), ["a", "b", "c"]);
    }

    #[test]
    fn parses_name_value() {
        assert_eq!(
            parse_var("profile=a=b"),
            Ok(("profile".into(), "a=b".into()))
        );
        assert!(parse_var("1x=2").is_err());
        assert!(parse_var("novalue").is_err());
    }
}
