//! The rustyline helper of the interactive shell: a statement is complete at
//! its `;` (a backslash command at the end of its line), and Tab completes
//! table names, column names and SQL keywords.

use std::borrow::Cow;

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

const KEYWORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP BY",
    "ORDER BY",
    "HAVING",
    "LIMIT",
    "JOIN",
    "LEFT JOIN",
    "ON",
    "AS",
    "WITH",
    "COUNT",
    "DISTINCT",
    "AND",
    "OR",
    "NOT",
    "NULL",
    "IS",
    "IN",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "UNION ALL",
    "DESC",
    "ASC",
    "EXPLAIN",
    "last_seen",
    "latest",
    "last_seen_struct",
];

/// Completion words and statement validation for the prompt.
pub struct ShellHelper {
    words: Vec<String>,
}

impl ShellHelper {
    /// A helper completing `tables` and `columns` besides SQL keywords.
    pub fn new(tables: &[String], columns: &[String]) -> Self {
        let mut words: Vec<String> = tables.iter().chain(columns).cloned().collect();
        words.extend(KEYWORDS.iter().map(|k| k.to_string()));
        words.sort();
        words.dedup();
        ShellHelper { words }
    }
}

/// Whether `input` holds a whole statement: a backslash command, or SQL whose
/// last non-blank character outside quotes is `;`.
pub fn is_complete(input: &str) -> bool {
    let t = input.trim();
    if t.is_empty() || t.starts_with('\\') {
        return true;
    }
    let mut quote: Option<char> = None;
    let mut last = None;
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '-' && chars.peek() == Some(&'-') => {
                // A line comment runs to the end of its line.
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
                continue;
            }
            None => {}
        }
        if !c.is_whitespace() {
            last = Some((c, quote.is_none()));
        }
    }
    matches!(last, Some((';', true)))
}

impl Validator for ShellHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        Ok(if is_complete(ctx.input()) {
            ValidationResult::Valid(None)
        } else {
            ValidationResult::Incomplete
        })
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let start = line[..pos]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let prefix = &line[start..pos];
        if prefix.is_empty() {
            return Ok((pos, vec![]));
        }
        let lower = prefix.to_lowercase();
        let found = self
            .words
            .iter()
            .filter(|w| w.to_lowercase().starts_with(&lower))
            .map(|w| Pair {
                display: w.clone(),
                replacement: w.clone(),
            })
            .collect();
        Ok((start, found))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        Cow::Borrowed(line)
    }
}

impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::is_complete;

    #[test]
    fn completeness() {
        assert!(is_complete("SELECT 1;"));
        assert!(!is_complete("SELECT 1"));
        assert!(!is_complete("SELECT ';'"));
        assert!(is_complete("SELECT ';' ;"));
        assert!(!is_complete("SELECT 1 -- done;"));
        assert!(is_complete("SELECT 1 -- first\n;"));
        assert!(is_complete("\\d"));
        assert!(is_complete(""));
    }
}
