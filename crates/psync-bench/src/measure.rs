//! Running one child process and measuring its wall time and peak RSS.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A command to run: program, arguments, extra environment.
#[derive(Debug, Clone)]
pub struct Cmd {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
}

impl Cmd {
    pub fn new(program: impl Into<PathBuf>) -> Cmd {
        Cmd {
            program: program.into(),
            args: vec![],
            env: vec![],
        }
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Cmd {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Cmd {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: &str, v: impl Into<String>) -> Cmd {
        self.env.push((k.to_string(), v.into()));
        self
    }

    /// The command line, for messages.
    pub fn display(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Runs to completion and returns its stdout; stderr is kept for the error message.
    pub fn output(&self) -> Result<String> {
        let out = self
            .command(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", self.program.display()))?;
        if !out.status.success() {
            bail!(
                "{} failed ({}):\n{}",
                self.display(),
                out.status,
                tail(&String::from_utf8_lossy(&out.stderr), 20)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// What one run of a child cost.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub seconds: f64,
    /// Peak resident set of the child, MiB (None when it could not be read).
    pub peak_rss_mb: Option<f64>,
}

/// How peak RSS is read: GNU time's `%M`, or polling `/proc/<pid>/status` (VmHWM).
#[derive(Debug, Clone)]
pub enum RssProbe {
    GnuTime(PathBuf),
    Proc,
}

impl RssProbe {
    pub fn detect() -> RssProbe {
        let time = PathBuf::from("/usr/bin/time");
        let works = Command::new(&time)
            .args(["-f", "%M", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if works {
            RssProbe::GnuTime(time)
        } else {
            RssProbe::Proc
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            RssProbe::GnuTime(_) => "/usr/bin/time -f %M (max RSS of the child)",
            RssProbe::Proc => "VmHWM of /proc/<pid>/status polled every 5 ms (approximate)",
        }
    }

    /// Runs `cmd` with stdout and stderr to `log`, measuring wall time and peak RSS.
    /// A failing child is an error that quotes the end of its log.
    pub fn measure(&self, cmd: &Cmd, log: &Path) -> Result<Sample> {
        let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        let rss_file = log.with_extension("rss");
        let mut c = match self {
            RssProbe::GnuTime(time) => {
                let mut c = cmd.command(time);
                c.arg("-f").arg("%M").arg("-o").arg(&rss_file);
                c.arg(&cmd.program).args(&cmd.args);
                c
            }
            RssProbe::Proc => {
                let mut c = cmd.command(&cmd.program);
                c.args(&cmd.args);
                c
            }
        };
        c.stdin(Stdio::null()).stdout(out).stderr(err);
        let started = Instant::now();
        let mut child = c
            .spawn()
            .with_context(|| format!("cannot run {}", cmd.program.display()))?;
        let mut hwm_kb = None;
        let status = match self {
            RssProbe::GnuTime(_) => child.wait()?,
            RssProbe::Proc => loop {
                if let Some(s) = child.try_wait()? {
                    break s;
                }
                hwm_kb = vmhwm_kb(child.id()).or(hwm_kb);
                std::thread::sleep(Duration::from_millis(5));
            },
        };
        let seconds = started.elapsed().as_secs_f64();
        if !status.success() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            bail!(
                "{} failed ({status}); end of {}:\n{}",
                cmd.display(),
                log.display(),
                tail(&text, 15)
            );
        }
        if let RssProbe::GnuTime(_) = self {
            // GNU time writes the format line last (after a note on a failed exit).
            hwm_kb = std::fs::read_to_string(&rss_file)
                .ok()
                .and_then(|s| s.lines().last().and_then(|l| l.trim().parse().ok()));
        }
        Ok(Sample {
            seconds,
            peak_rss_mb: hwm_kb.map(|kb: u64| kb as f64 / 1024.0),
        })
    }
}

fn vmhwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
