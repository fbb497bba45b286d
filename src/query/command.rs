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
    /// `\run NAME [param=value ...]`: run a query of the pack; `\run` lists them.
    Run(Option<String>, Vec<(String, String)>),
    /// `\set`: list the variables; `\set NAME VALUE`: set one.
    Set(Option<(String, String)>),
    /// `\unset NAME`: forget a variable.
    Unset(String),
    /// `\o FILE`: results to FILE (CSV, JSON, NDJSON or Parquet by its extension);
    /// `\o`: back to the terminal.
    Output(Option<PathBuf>),
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
\\run NAME     run a query of the pack (\\run alone lists them), e.g. \\run person_events profile=sid_1
\\set N VALUE  set variable N, written :N or $N in SQL (a string or number), :\"N\" for a column name
\\set          list the variables; \\unset N forgets one
\\o FILE       write results to FILE (.csv, .json, .ndjson, .parquet); \\o alone: back to the terminal
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
            "\\run" => {
                let mut words = arg.split_whitespace();
                let name = words.next().map(str::to_string);
                let params = words
                    .map(psync_core::sql::params::parse_var)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Command::Run(name, params))
            }
            "\\set" if arg.is_empty() => Ok(Command::Set(None)),
            "\\set" => {
                let (n, v) = arg.split_once(char::is_whitespace).unwrap_or((arg, ""));
                let (n, v) = psync_core::sql::params::parse_var(&format!("{n}={}", v.trim()))?;
                Ok(Command::Set(Some((n, v))))
            }
            "\\unset" => Ok(Command::Unset(need("a variable name")?.to_string())),
            "\\o" | "\\out" if arg.is_empty() => Ok(Command::Output(None)),
            "\\o" | "\\out" => Ok(Command::Output(Some(PathBuf::from(arg)))),
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
        assert_eq!(
            "\\run person_events profile=sid_1".parse(),
            Ok(Command::Run(
                Some("person_events".into()),
                vec![("profile".into(), "sid_1".into())]
            ))
        );
        assert_eq!("\\run".parse(), Ok(Command::Run(None, vec![])));
        assert_eq!(
            "\\set profile  email:a b".parse(),
            Ok(Command::Set(Some(("profile".into(), "email:a b".into()))))
        );
        assert_eq!("\\o".parse(), Ok(Command::Output(None)));
        assert_eq!(
            "\\o out.parquet".parse(),
            Ok(Command::Output(Some("out.parquet".into())))
        );
    }
}
