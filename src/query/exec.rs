//! Running statements: from `-c`, `-f`, a piped stdin, or the interactive prompt.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use psync_core::EngineOptions;
use psync_core::catalog::Entry;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Config, Editor};
use tokio::runtime::Runtime;

use super::command::{Command, HELP};
use super::helper::{ShellHelper, is_complete};
use super::output::Output;
use super::pack;
use super::print::{Format, Printer};
use super::progress::Progress;
use psync_core::sql::params::{self, Vars};

/// The shell's state: the session, what it holds, and display settings.
pub struct Shell {
    pub ctx: SessionContext,
    pub entries: Vec<Entry>,
    pub format: Format,
    pub timing: bool,
    pub max_rows: usize,
    /// Store settings, for the stores of `'s3://...'` paths queried directly.
    pub engine: EngineOptions,
    /// `-v` / `\set` variables.
    pub vars: Vars,
    /// `\o FILE`: where results go instead of the terminal.
    pub output: Option<Output>,
    /// Show a progress line on stderr for statements that run longer than a second.
    pub progress: bool,
}

/// What a statement's task sends to the printer.
enum Msg {
    Schema(SchemaRef),
    Batch(RecordBatch),
}

impl Shell {
    /// Runs every statement of `sql`, stopping at the first failure.
    pub async fn run_sql(&mut self, sql: &str, out: &mut dyn Write) -> anyhow::Result<()> {
        let statements = psync_core::sql::statements(&self.ctx, sql, &self.vars, &self.engine)?;
        for statement in statements {
            self.run_statement(statement, out).await?;
        }
        Ok(())
    }

    /// Plans and runs one statement in its own task (a panic inside it is
    /// reported as a bug instead of ending the shell), streaming its rows out.
    async fn run_statement(
        &mut self,
        statement: datafusion::sql::parser::Statement,
        out: &mut dyn Write,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let ctx = self.ctx.clone();
        let progress = self.progress.then(Progress::new);
        let scanned = progress.as_ref().map(Progress::counters);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Msg>(4);
        let mut task = AbortOnDrop(tokio::spawn(async move {
            let physical = psync_core::sql::physical_plan(&ctx, statement).await?;
            if let Some(scanned) = scanned {
                scanned.watch(&physical);
            }
            let mut stream = datafusion::physical_plan::execute_stream(physical, ctx.task_ctx())?;
            let _ = tx.send(Msg::Schema(stream.schema())).await;
            while let Some(batch) = stream.next().await {
                if tx.send(Msg::Batch(batch?)).await.is_err() {
                    break;
                }
            }
            Ok::<_, datafusion::error::DataFusionError>(())
        }));
        let ticker = progress.as_ref().map(|p| p.start(started));
        let result = self.receive(&mut rx, out, progress.as_ref()).await;
        if let Some(t) = ticker {
            t.stop();
        }
        drop(rx);
        let (schema, rows, printer) = result?; // an error drops (aborts) the task
        match (&mut task.0).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("{}", psync_core::sql::query_error(&e)),
            Err(e) if e.is_panic() => {
                bail!("internal error (this is a bug, please report it): {e}")
            }
            Err(e) => bail!("{e}"),
        }
        let Some(schema) = schema else {
            return Ok(());
        };
        match &mut self.output {
            None => printer.finish(out, &schema, started.elapsed(), self.timing),
            Some(o) => {
                o.end(&schema, started.elapsed())?;
                let noun = if rows == 1 { "row" } else { "rows" };
                writeln!(out, "{rows} {noun} written to {}", o.path().display())?;
                Ok(())
            }
        }
    }

    /// Takes the statement's messages: prints them, or writes them to the `\o` file.
    async fn receive(
        &mut self,
        rx: &mut tokio::sync::mpsc::Receiver<Msg>,
        out: &mut dyn Write,
        progress: Option<&Progress>,
    ) -> anyhow::Result<(Option<SchemaRef>, usize, Printer)> {
        let mut printer = Printer::new(self.format, self.max_rows);
        let mut schema = None;
        let mut rows = 0;
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::Schema(s) => {
                    if let Some(o) = &mut self.output {
                        o.begin(&s)?;
                    }
                    schema = Some(s);
                }
                Msg::Batch(b) => {
                    rows += b.num_rows();
                    match &mut self.output {
                        Some(o) => o.batch(&b)?,
                        None => {
                            // Rows the progress line must not cut into.
                            if let Some(p) = progress.filter(|_| printer.prints_now()) {
                                p.quiet();
                            }
                            printer.batch(out, &b)?
                        }
                    }
                }
            }
        }
        Ok((schema, rows, printer))
    }

    /// Runs a query of the pack with `params` set for it (on top of `-v`/`\set`).
    pub async fn run_pack(
        &mut self,
        name: &str,
        params: &[(String, String)],
        out: &mut dyn Write,
    ) -> anyhow::Result<()> {
        let query = pack::find(name).map_err(|e| anyhow!(e))?;
        let saved = self.vars.clone();
        self.vars.extend(params.iter().cloned());
        if let Some(m) = params::referenced(query.sql)
            .into_iter()
            .find(|n| !self.vars.contains_key(n))
        {
            self.vars = saved;
            let what = query
                .params()
                .into_iter()
                .find(|(n, _)| *n == m)
                .map_or(String::new(), |(_, w)| format!(" ({w})"));
            bail!(
                "query {} needs the parameter '{m}'{what}: give it with -v {m}=VALUE or \\run {} {m}=VALUE",
                query.name,
                query.name
            );
        }
        let result = self.run_sql(query.sql, out).await;
        self.vars = saved;
        result.with_context(|| format!("query {}", query.name))
    }

    /// Runs the statements of a file.
    pub async fn run_file(&mut self, path: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
        let sql = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        self.run_sql(&sql, out)
            .await
            .with_context(|| format!("in {}", path.display()))
    }

    /// Runs a backslash command; `Ok(false)` means quit.
    pub async fn run_command(
        &mut self,
        command: Command,
        out: &mut dyn Write,
    ) -> anyhow::Result<bool> {
        match command {
            Command::ListTables => {
                writeln!(out, "{:<32} {:<18} {:>12}", "name", "kind", "rows")?;
                for e in &self.entries {
                    let rows = e.rows.map_or("-".to_string(), |r| r.to_string());
                    writeln!(
                        out,
                        "{:<32} {:<18} {:>12}",
                        e.name,
                        e.origin.to_string(),
                        rows
                    )?;
                }
            }
            Command::Describe(name) => {
                let Some(e) = self
                    .entries
                    .iter()
                    .find(|e| e.name.eq_ignore_ascii_case(name.trim()))
                else {
                    bail!("no table or view named '{name}'; \\d lists them");
                };
                writeln!(out, "{} ({})", e.name, e.origin)?;
                for f in e.schema.fields() {
                    writeln!(out, "  {:<32} {}", f.name(), f.data_type())?;
                }
            }
            Command::Timing => {
                self.timing = !self.timing;
                writeln!(out, "timing is {}", if self.timing { "on" } else { "off" })?;
            }
            Command::Format(f) => {
                self.format = f;
                writeln!(out, "output format is {f:?}")?;
            }
            Command::Include(path) => self.run_file(&path, out).await?,
            Command::Run(None, _) => write!(out, "{}", pack::listing())?,
            Command::Run(Some(name), params) => self.run_pack(&name, &params, out).await?,
            Command::Set(None) => {
                for (n, v) in &self.vars {
                    writeln!(out, "{n} = {v}")?;
                }
            }
            Command::Set(Some((n, v))) => {
                self.vars.insert(n, v);
            }
            Command::Unset(n) => {
                self.vars.remove(&n);
            }
            Command::Output(path) => {
                if let Some(previous) = self.output.take() {
                    previous.close()?;
                }
                if let Some(path) = path {
                    self.output = Some(Output::create(&path)?);
                }
            }
            Command::Help => writeln!(out, "{HELP}\n\n{}", pack::listing())?,
            Command::Quit => return Ok(false),
        }
        Ok(true)
    }

    /// Table and column names for completion.
    fn names(&self) -> (Vec<String>, Vec<String>) {
        let tables = self.entries.iter().map(|e| e.name.clone()).collect();
        let columns = self
            .entries
            .iter()
            .flat_map(|e| e.schema.fields().iter().map(|f| f.name().clone()))
            .collect();
        (tables, columns)
    }
}

/// A statement's task, aborted when dropped: when Ctrl-C drops the statement's
/// future, the query must stop too instead of running on in the background.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Script mode: the `-c` statements, the `--run` pack queries, then the `-f`
/// files, or a piped stdin.
pub fn run_script(
    rt: &Runtime,
    shell: &mut Shell,
    commands: &[String],
    runs: &[String],
    files: &[PathBuf],
) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    rt.block_on(async {
        if commands.is_empty() && runs.is_empty() && files.is_empty() {
            let mut sql = String::new();
            std::io::stdin()
                .read_to_string(&mut sql)
                .context("reading statements from stdin")?;
            return run_lines(shell, &sql, &mut out).await;
        }
        for c in commands {
            run_lines(shell, c, &mut out).await?;
        }
        for name in runs {
            if name == "list" {
                write!(out, "{}", pack::listing())?;
            } else {
                shell.run_pack(name, &[], &mut out).await?;
            }
        }
        for f in files {
            shell.run_file(f, &mut out).await?;
        }
        Ok(())
    })
}

/// Runs text that may mix SQL with backslash commands on their own lines.
async fn run_lines(shell: &mut Shell, text: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut sql = String::new();
    for line in text.lines() {
        // A command line ends the SQL before it once that SQL is whole (ends at ';').
        if line.trim_start().starts_with('\\') && (sql.trim().is_empty() || is_complete(&sql)) {
            if !sql.trim().is_empty() {
                shell.run_sql(&sql, out).await?;
                sql.clear();
            }
            let command: Command = line.parse().map_err(|e: String| anyhow!(e))?;
            if !shell.run_command(command, out).await? {
                return Ok(());
            }
        } else {
            sql.push_str(line);
            sql.push('\n');
        }
    }
    if !sql.trim().is_empty() {
        shell.run_sql(&sql, out).await?;
    }
    Ok(())
}

/// Where the history file lives: `$PSYNC_HISTORY`, else the user's state folder.
fn history_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PSYNC_HISTORY") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local").join("state"))
        })?;
    Some(base.join("psync-lake").join("history"))
}

/// The interactive prompt.
pub fn run_interactive(rt: &Runtime, shell: &mut Shell) -> anyhow::Result<()> {
    let config = Config::builder()
        .auto_add_history(false)
        .max_history_size(10_000)?
        .build();
    let mut editor: Editor<ShellHelper, DefaultHistory> = Editor::with_config(config)?;
    let (tables, columns) = shell.names();
    editor.set_helper(Some(ShellHelper::new(&tables, &columns)));
    let history = history_path();
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    eprintln!(
        "psync-lake query: {} tables and views; \\d lists them, \\? for help, \\q to quit.",
        shell.entries.len()
    );
    loop {
        let line = match editor.readline("psync> ") {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(text);
        if let Some(h) = &history {
            if let Some(dir) = h.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = editor.append_history(h);
        }
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let keep_going = rt.block_on(async {
            let work = async {
                if text.starts_with('\\') {
                    let command: Command = text.parse().map_err(|e: String| anyhow!(e))?;
                    shell.run_command(command, &mut out).await
                } else {
                    shell.run_sql(text, &mut out).await.map(|()| true)
                }
            };
            tokio::select! {
                r = work => r,
                _ = tokio::signal::ctrl_c() => {
                    eprintln!("cancelled");
                    Ok(true)
                }
            }
        });
        match keep_going {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => eprintln!("error: {}", crate::one_line(&e)),
        }
    }
    Ok(())
}

/// Whether to run the prompt: stdin and stdout are both terminals and no
/// statements were given.
pub fn interactive(commands: &[String], files: &[PathBuf]) -> bool {
    commands.is_empty() && files.is_empty() && std::io::stdin().is_terminal()
}
