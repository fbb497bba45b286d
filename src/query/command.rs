//! The shell's backslash commands.

use std::path::PathBuf;
use std::str::FromStr;

use super::print::Format;

/// A backslash command typed at the prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `\d`: tables and views, with row counts where cheap.
    ListTables,
    /// `\d NAME`: one table's columns.
    Describe(String),
    /// `\timing`: toggle printing the elapsed time.
    Timing,
    /// `\format F`: switch the output format.
    Format(Format),
    /// `\i FILE`: run the statements in a file.
    Include(PathBuf),
    /// `\?`: help.
    Help,
    /// `\q`: quit.
    Quit,
}

/// The help text of `\?`.
pub const HELP: &str = "\
\\d            list tables and views (row counts where known without a scan)
\\d NAME       show a table's columns
\\timing       toggle timing of statements
\\format F     output format: table, csv, json, ndjson
\\i FILE       run the SQL statements in FILE
\\?            this help
\\q            quit (or Ctrl-D)
SQL statements end with ';' and may span lines. Ctrl-C cancels a running query.";

impl FromStr for Command {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().trim_end_matches(';').trim();
        let (name, arg) = match s.split_once(char::is_whitespace) {
            Some((n, a)) => (n, a.trim()),
            None => (s, ""),
        };
        let need = |what: &str| {
            if arg.is_empty() {
                Err(format!("{name} needs {what}"))
            } else {
                Ok(arg)
            }
        };
        match name {
            "\\d" if arg.is_empty() => Ok(Command::ListTables),
            "\\d" => Ok(Command::Describe(arg.to_string())),
            "\\timing" => Ok(Command::Timing),
            "\\format" => Ok(Command::Format(
                need("a format (table, csv, json, ndjson)")?.parse()?,
            )),
            "\\i" => Ok(Command::Include(PathBuf::from(need("a file")?))),
            "\\?" | "\\h" | "\\help" => Ok(Command::Help),
            "\\q" | "\\quit" => Ok(Command::Quit),
            _ => Err(format!("unknown command {name}; \\? lists the commands")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!("\\d".parse(), Ok(Command::ListTables));
        assert_eq!(
            "\\d  id_graph ".parse(),
            Ok(Command::Describe("id_graph".into()))
        );
        assert_eq!("\\format csv".parse(), Ok(Command::Format(Format::Csv)));
        assert_eq!("\\q;".parse(), Ok(Command::Quit));
        assert!("\\format xml".parse::<Command>().is_err());
        assert!("\\i".parse::<Command>().is_err());
        assert!("\\nope".parse::<Command>().is_err());
    }
}
