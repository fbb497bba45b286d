//! Who this process is, as a lease records it, and whether a process named in
//! a lease is still the one that wrote it: host name, boot id, pid and the
//! process's start time (so that a reused pid is not taken for the holder).
//!
//! Read from `/proc` on Linux. Elsewhere the boot id and start times are
//! unknown, and a lease of this host is judged by its age, like another host's.

use std::sync::OnceLock;

/// This process as a lease names it.
#[derive(Debug, Clone)]
pub struct Me {
    /// Host name.
    pub host: String,
    /// The kernel's boot id (a reboot makes every pid of the old boot dead).
    pub boot_id: Option<String>,
    /// Process id.
    pub pid: u32,
    /// Start time of the process, in clock ticks since boot.
    pub process_start: Option<u64>,
}

/// This process (read once).
pub fn me() -> &'static Me {
    static ME: OnceLock<Me> = OnceLock::new();
    ME.get_or_init(|| {
        let pid = std::process::id();
        Me {
            host: host_name(),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
            pid,
            process_start: process_start(pid),
        }
    })
}

/// What is known of a process of this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// Running, and started when the lease says.
    Alive,
    /// No such process, or the pid now belongs to a process started later.
    Gone,
    /// This platform does not tell.
    Unknown,
}

/// Whether `pid`, started at `started` (ticks since boot, when recorded), runs.
pub fn process(pid: u32, started: Option<u64>) -> Process {
    if !std::path::Path::new("/proc/self/stat").exists() {
        return Process::Unknown;
    }
    match (process_start(pid), started) {
        (None, _) => Process::Gone,
        (Some(now), Some(then)) if now != then => Process::Gone,
        (Some(_), _) => Process::Alive,
    }
}

/// The host name, or `PSYNC_HOST_NAME` when set: for hosts whose names are not
/// unique among the machines sharing a destination (and for tests that play
/// another host).
fn host_name() -> String {
    std::env::var("PSYNC_HOST_NAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| read_trimmed("/proc/sys/kernel/hostname"))
        .or_else(|| read_trimmed("/etc/hostname"))
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Field 22 of `/proc/<pid>/stat`: the start time. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted after its last `)`.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn read_trimmed(path: &str) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let me = me();
        assert!(!me.host.is_empty());
        if me.process_start.is_none() {
            return; // Not Linux: nothing more to check.
        }
        assert_eq!(process(me.pid, me.process_start), Process::Alive);
        let other_start = me.process_start.map(|t| t + 1);
        assert_eq!(process(me.pid, other_start), Process::Gone);
    }

    #[test]
    fn a_finished_process_is_gone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        if me().process_start.is_some() {
            assert_eq!(process(pid, None), Process::Gone);
        }
    }
}
