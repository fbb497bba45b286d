//! The claim a run holds on a destination: a lease object `<dest>/_psync/lock`,
//! renewed while the run lives, so that two runs never publish into one
//! destination together and a dead run never blocks the next one for long.
//!
//! ```text
//! acquire: PUT lock, if absent (If-None-Match: *) ─ok─► held, version V0
//!            │ already there
//!            ▼
//!          read it and judge the holder:
//!            this host, its process gone (pid dead or reused, host rebooted) ─► stale at once
//!            otherwise, not renewed for --lease-timeout (the store's clock)  ─► stale
//!            else                                                             ─► Locked error
//!          stale ─► PUT lock, if still that version (If-Match) ─ok─► held
//!                     └─ precondition failed: another run changed it first ─► judge again
//! held:    every timeout/6, PUT lock if still Vn (If-Match) ─► Vn+1
//!            └─ precondition failed, or no renewal for most of a timeout ─► lost:
//!               the run stops before it commits anything more
//! release: stop renewing; DELETE the lock if it is still Vn
//! ```
//!
//! Ages are differences of two `last_modified` times the store itself gave
//! (the lock's, and that of a probe object written just before), never the
//! local clock: a host whose clock is off neither takes a live lease nor waits
//! for a dead one. On local disk the conditional overwrite is
//! [`psync_lake_io::LocalStore`]'s.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutPayload, PutResult, UpdateVersion};
use psync_lake_io::Location;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result, publish_err};
use crate::host::{self, Process};

/// How a run claims its destination.
#[derive(Debug, Clone)]
pub struct LeaseOptions {
    /// Another host's lease not renewed for this long is stale.
    pub timeout: Duration,
    /// Take the lease over whoever holds it (the operator knows the holder is dead).
    pub break_lock: bool,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        LeaseOptions {
            timeout: Duration::from_secs(60),
            break_lock: false,
        }
    }
}

/// What the lock object says (a field it lacks reads as empty: such a lock is
/// judged by its age alone).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Holder {
    /// The run holding it.
    pub run_id: String,
    /// Host name of the holder.
    pub host: String,
    /// Kernel boot id of the holder's host (Linux).
    pub boot_id: Option<String>,
    /// Process id of the holder.
    pub pid: u32,
    /// Start time of the holder's process, clock ticks since boot (Linux).
    pub process_start: Option<u64>,
    /// When the lease was taken (the holder's clock, for people).
    pub acquired_at: String,
    /// When it was last renewed (the holder's clock, for people).
    pub renewed_at: String,
    /// Renewals so far.
    pub renewals: u64,
    /// The holder's own lease timeout, in seconds.
    pub lease_timeout_seconds: f64,
}

impl Holder {
    fn new(run_id: &str, timeout: Duration) -> Self {
        let me = host::me();
        let now = Utc::now().to_rfc3339();
        Holder {
            run_id: run_id.to_string(),
            host: me.host.clone(),
            boot_id: me.boot_id.clone(),
            pid: me.pid,
            process_start: me.process_start,
            acquired_at: now.clone(),
            renewed_at: now,
            renewals: 0,
            lease_timeout_seconds: timeout.as_secs_f64(),
        }
    }

    fn body(&self) -> PutPayload {
        PutPayload::from(serde_json::to_vec_pretty(self).unwrap_or_default())
    }

    /// `run R (host H, pid P)`.
    pub fn describe(&self) -> String {
        format!("run {} (host {}, pid {})", self.run_id, self.host, self.pid)
    }
}

/// Whether a lock still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Its holder is a process of this host that runs.
    Alive,
    /// Its holder is elsewhere (or cannot be checked) and renewed it recently.
    Live,
    /// Left by a run that is gone: the next run takes it over.
    Stale,
}

/// A lock found on a destination, judged.
#[derive(Debug, Clone, Serialize)]
pub struct LockState {
    /// The lock object.
    pub url: String,
    /// Its content; `None` when it is not a lease this version can read.
    pub holder: Option<Holder>,
    /// When the store last wrote it.
    pub last_modified: String,
    /// Seconds since then, by the store's clock.
    pub age_seconds: f64,
    /// Whether it holds.
    pub verdict: Verdict,
    /// Why.
    pub why: String,
    #[serde(skip)]
    version: UpdateVersion,
}

impl LockState {
    /// Whether the next run may take it over.
    pub fn is_stale(&self) -> bool {
        self.verdict == Verdict::Stale
    }

    fn holder_id(&self) -> String {
        self.holder
            .as_ref()
            .map_or_else(|| "unknown".into(), |h| h.run_id.clone())
    }
}

/// The lock object of `dest`.
pub fn lock_path(dest: &Location) -> Path {
    dest.child(&["_psync", "lock"])
}

/// Runs of this process holding a lease now: a lock naming this process but
/// none of these was left by a run of it that ended without releasing.
fn active() -> &'static Mutex<HashSet<String>> {
    static ACTIVE: std::sync::OnceLock<Mutex<HashSet<String>>> = std::sync::OnceLock::new();
    ACTIVE.get_or_init(Default::default)
}

fn is_active(run_id: &str) -> bool {
    active().lock().is_ok_and(|a| a.contains(run_id))
}

/// Reads and judges the lock of `dest`; `None` when there is none.
pub async fn inspect(dest: &Location, timeout: Duration) -> Result<Option<LockState>> {
    let path = lock_path(dest);
    let url = dest.url_of(&path);
    let got = match dest.store.get(&path).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(publish_err(&url, e)),
    };
    let meta = got.meta.clone();
    let body = match got.bytes().await {
        Ok(b) => b,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(publish_err(&url, e)),
    };
    let holder: Option<Holder> = serde_json::from_slice(&body).ok();
    let now = store_now(dest).await?;
    let age = (now - meta.last_modified).to_std().unwrap_or_default();
    let (verdict, why) = judge(holder.as_ref(), age, timeout);
    Ok(Some(LockState {
        url,
        holder,
        last_modified: meta.last_modified.to_rfc3339(),
        age_seconds: age.as_secs_f64(),
        verdict,
        why,
        version: UpdateVersion {
            e_tag: meta.e_tag,
            version: meta.version,
        },
    }))
}

/// The store's time now: the modification time of a probe object written for it.
async fn store_now(dest: &Location) -> Result<DateTime<Utc>> {
    let probe = dest.child(&["_psync", "clock"]);
    let url = dest.url_of(&probe);
    dest.store
        .put(
            &probe,
            PutPayload::from_static(b"the store's clock, read by lease checks\n"),
        )
        .await
        .map_err(|e| publish_err(&url, e))?;
    let meta = dest
        .store
        .head(&probe)
        .await
        .map_err(|e| publish_err(&url, e))?;
    Ok(meta.last_modified)
}

fn judge(holder: Option<&Holder>, age: Duration, timeout: Duration) -> (Verdict, String) {
    let me = host::me();
    if let Some(h) = holder.filter(|h| h.host == me.host) {
        if h.boot_id.is_some() && me.boot_id.is_some() && h.boot_id != me.boot_id {
            return (
                Verdict::Stale,
                format!("this host rebooted since pid {} took it", h.pid),
            );
        }
        if h.pid == me.pid && h.process_start == me.process_start {
            return if is_active(&h.run_id) {
                (Verdict::Alive, "held by a run of this process".into())
            } else {
                (
                    Verdict::Stale,
                    "left by a run of this process that ended".into(),
                )
            };
        }
        match host::process(h.pid, h.process_start) {
            Process::Alive => {
                return (Verdict::Alive, format!("pid {} runs on this host", h.pid));
            }
            Process::Gone => {
                return (
                    Verdict::Stale,
                    format!("pid {} no longer runs on this host", h.pid),
                );
            }
            Process::Unknown => {}
        }
    }
    if age >= timeout {
        (
            Verdict::Stale,
            format!(
                "not renewed for {} (lease timeout {})",
                humanize(age),
                humanize(timeout)
            ),
        )
    } else {
        (
            Verdict::Live,
            format!(
                "renewed {} ago; stale if not renewed within {} more",
                humanize(age),
                humanize(timeout - age)
            ),
        )
    }
}

/// A lease this run holds; renewed in the background until released.
#[derive(Debug)]
pub struct Lease {
    url: String,
    shared: Arc<Shared>,
    renewer: Option<tokio::task::JoinHandle<()>>,
    run_id: String,
}

#[derive(Debug)]
struct Shared {
    dest: Location,
    timeout: Duration,
    /// The version of the lock this lease wrote last, and what it wrote. Held
    /// across a renewal, so that two renewals never race each other's `If-Match`.
    held: tokio::sync::Mutex<(UpdateVersion, Holder, Instant)>,
    /// Why the lease was lost, once it was.
    lost: Mutex<Option<String>>,
}

/// Attempts at creating or taking over the lock before giving up (each lost
/// attempt means another run changed the lock meanwhile).
const ATTEMPTS: usize = 5;

impl Lease {
    /// Takes the lease of `dest` for `run_id`: creates the lock, or takes over a
    /// stale one; fails with [`CoreError::Locked`] when it holds.
    pub async fn acquire(dest: &Location, run_id: &str, opts: &LeaseOptions) -> Result<Lease> {
        let path = lock_path(dest);
        let url = dest.url_of(&path);
        let holder = Holder::new(run_id, opts.timeout);
        let mut claim = Claiming::new(run_id);
        for _ in 0..ATTEMPTS {
            let create = dest
                .store
                .put_opts(&path, holder.body(), PutMode::Create.into())
                .await;
            match create {
                Ok(put) => {
                    claim.keep();
                    return Ok(Lease::start(dest, url, holder, put, opts.timeout));
                }
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(publish_err(&url, e)),
            }
            let Some(found) = inspect(dest, opts.timeout).await? else {
                continue; // Released meanwhile: create it again.
            };
            if !found.is_stale() && !opts.break_lock {
                return Err(CoreError::Locked {
                    url,
                    holder: found.holder_id(),
                    detail: locked_detail(&found, opts.timeout),
                });
            }
            tracing::warn!(
                holder = %found.holder_id(),
                why = %found.why,
                "taking over the lease of a run that is gone"
            );
            let takeover = dest
                .store
                .put_opts(
                    &path,
                    holder.body(),
                    PutMode::Update(found.version.clone()).into(),
                )
                .await;
            match takeover {
                Ok(put) => {
                    claim.keep();
                    return Ok(Lease::start(dest, url, holder, put, opts.timeout));
                }
                // Another run changed it first: judge what is there now.
                Err(
                    object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. },
                ) => {}
                Err(e) => return Err(publish_err(&url, e)),
            }
        }
        Err(CoreError::Publish {
            url,
            message: format!(
                "the lock changed hands {ATTEMPTS} times while this run tried to take it"
            ),
        })
    }

    fn start(
        dest: &Location,
        url: String,
        holder: Holder,
        put: PutResult,
        timeout: Duration,
    ) -> Lease {
        if let Ok(mut a) = active().lock() {
            a.insert(holder.run_id.clone());
        }
        let run_id = holder.run_id.clone();
        let shared = Arc::new(Shared {
            dest: dest.clone(),
            timeout,
            held: tokio::sync::Mutex::new((UpdateVersion::from(put), holder, Instant::now())),
            lost: Mutex::new(None),
        });
        let renewer = tokio::spawn(renew_in_background(shared.clone()));
        Lease {
            url,
            shared,
            renewer: Some(renewer),
            run_id,
        }
    }

    /// Fails with [`CoreError::LeaseLost`] once the lease is known to be lost.
    pub fn check(&self) -> Result<()> {
        match self.shared.lost.lock().ok().and_then(|l| l.clone()) {
            Some(why) => Err(CoreError::LeaseLost {
                url: self.url.clone(),
                why,
            }),
            None => Ok(()),
        }
    }

    /// Renews the lease now: succeeds only while this run still holds it (a
    /// commit calls it before each file, so that a run whose lease was taken
    /// over publishes nothing more).
    pub async fn renew_now(&self) -> Result<()> {
        self.check()?;
        self.shared.renew().await;
        self.check()
    }

    /// Stops renewing and removes the lock, if it is still this lease's.
    pub async fn release(mut self) {
        // A renewal holds `held` across its write: once we hold it, none is in
        // flight, and the renewer can only be asleep or waiting for it.
        let held = self.shared.held.lock().await;
        if let Some(task) = self.renewer.take() {
            task.abort();
        }
        let ours = held.0.e_tag.clone();
        drop(held);
        if self.check().is_err() {
            return; // Another run holds it now.
        }
        let dest = &self.shared.dest;
        let path = lock_path(dest);
        match dest.store.head(&path).await {
            Ok(meta) if meta.e_tag == ours => {
                if let Err(e) = dest.store.delete(&path).await {
                    tracing::warn!(lock = %self.url, error = %e, "could not remove the lock; the next run finds it stale");
                }
            }
            Ok(_) => tracing::warn!(lock = %self.url, "the lock is another run's now; left alone"),
            Err(_) => {}
        }
    }
}

/// A run of this process that is taking a lease counts as active from before its
/// conditional write: another run of this process that reads the lock after the
/// store took the write, but before this run saw the answer and started its
/// [`Lease`], must find the holder alive, not left by a run that ended.
struct Claiming<'a> {
    run_id: Option<&'a str>,
}

impl<'a> Claiming<'a> {
    fn new(run_id: &'a str) -> Self {
        if let Ok(mut a) = active().lock() {
            a.insert(run_id.to_string());
        }
        Claiming {
            run_id: Some(run_id),
        }
    }

    /// The lease is taken: from now on the [`Lease`] keeps the run active.
    fn keep(&mut self) {
        self.run_id = None;
    }
}

impl Drop for Claiming<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.run_id
            && let Ok(mut a) = active().lock()
        {
            a.remove(id);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(task) = self.renewer.take() {
            task.abort();
        }
        if let Ok(mut a) = active().lock() {
            a.remove(&self.run_id);
        }
    }
}

/// How often a lease is renewed: often enough that a few failed renewals in a
/// row still leave most of a timeout.
fn renew_every(timeout: Duration) -> Duration {
    (timeout / 6).clamp(Duration::from_millis(100), Duration::from_secs(10))
}

async fn renew_in_background(shared: Arc<Shared>) {
    let every = renew_every(shared.timeout);
    while shared.lost.lock().is_ok_and(|l| l.is_none()) {
        tokio::time::sleep(every).await;
        shared.renew().await;
    }
}

impl Shared {
    /// One renewal: a conditional overwrite of the version this lease wrote last.
    /// A precondition failure means another run took the lock over; failing to
    /// renew for most of a timeout means another run may have: either way the
    /// lease is lost.
    async fn renew(&self) {
        let mut held = self.held.lock().await;
        let (version, holder, renewed) = &mut *held;
        holder.renewals += 1;
        holder.renewed_at = Utc::now().to_rfc3339();
        let path = lock_path(&self.dest);
        let put = self
            .dest
            .store
            .put_opts(
                &path,
                holder.body(),
                PutMode::Update(version.clone()).into(),
            )
            .await;
        let lost = match put {
            Ok(put) => {
                *version = UpdateVersion::from(put);
                *renewed = Instant::now();
                return;
            }
            Err(
                object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. },
            ) => match inspect(&self.dest, self.timeout).await {
                Ok(Some(s)) => s.holder.map_or_else(
                    || "the lock was replaced".to_string(),
                    |h| format!("{} took it over", h.describe()),
                ),
                Ok(None) => "the lock was removed (another run took it over and finished)".into(),
                Err(e) => format!("the lock changed ({e})"),
            },
            Err(e) if renewed.elapsed() + renew_every(self.timeout) >= self.timeout => format!(
                "could not renew it for {} ({e})",
                humanize(renewed.elapsed())
            ),
            Err(e) => {
                tracing::warn!(error = %e, "renewing the lease failed; retrying");
                return;
            }
        };
        tracing::error!(why = %lost, "lost the destination's lease");
        if let Ok(mut l) = self.lost.lock() {
            *l = Some(lost);
        }
    }
}

fn locked_detail(found: &LockState, timeout: Duration) -> String {
    let who = found.holder.as_ref().map_or_else(
        || "an unreadable lock".to_string(),
        |h| format!("host {}, pid {}", h.host, h.pid),
    );
    match found.verdict {
        Verdict::Alive => format!("{who}: {}; a running run's lease is never taken", found.why),
        _ => format!(
            "{who}: {}; taken over once not renewed for {} (--lease-timeout), or pass --break-lock if it is dead",
            found.why,
            humanize(timeout)
        ),
    }
}

/// `1h05m` / `4m09s` / `12s`.
pub(crate) fn humanize(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s >= 10 {
        format!("{s}s")
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn other_host(age_ok: bool) -> (Holder, Duration) {
        let mut h = Holder::new("r1", Duration::from_secs(60));
        h.host = "some-other-host".into();
        let age = if age_ok { 5 } else { 61 };
        (h, Duration::from_secs(age))
    }

    #[test]
    fn another_hosts_lease_is_judged_by_its_age() {
        let (h, young) = other_host(true);
        assert_eq!(
            judge(Some(&h), young, Duration::from_secs(60)).0,
            Verdict::Live
        );
        let (h, old) = other_host(false);
        assert_eq!(
            judge(Some(&h), old, Duration::from_secs(60)).0,
            Verdict::Stale
        );
        // An unreadable lock too.
        assert_eq!(judge(None, young, Duration::from_secs(60)).0, Verdict::Live);
        assert_eq!(judge(None, old, Duration::from_secs(60)).0, Verdict::Stale);
    }

    #[test]
    fn this_hosts_lease_is_judged_by_its_process() {
        if host::me().process_start.is_none() {
            return; // No /proc here.
        }
        let young = Duration::from_secs(1);
        let timeout = Duration::from_secs(60);
        // This process, with no such run active: left by a run that ended.
        let mine = Holder::new("not-running", timeout);
        assert_eq!(judge(Some(&mine), young, timeout).0, Verdict::Stale);
        // A process that ended.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let mut gone = mine.clone();
        gone.pid = child.id();
        gone.process_start = None;
        child.wait().unwrap();
        assert_eq!(judge(Some(&gone), young, timeout).0, Verdict::Stale);
        // A live process, even when its lease is old (it cannot renew while stopped, say).
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut alive = mine.clone();
        alive.pid = sleeper.id();
        alive.process_start = None;
        let old = Duration::from_secs(3600);
        assert_eq!(judge(Some(&alive), old, timeout).0, Verdict::Alive);
        // Another boot of this host.
        let mut rebooted = alive.clone();
        rebooted.boot_id = Some("another-boot".into());
        assert_eq!(judge(Some(&rebooted), young, timeout).0, Verdict::Stale);
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
    }

    #[test]
    fn renewals_leave_most_of_a_timeout() {
        assert_eq!(
            renew_every(Duration::from_secs(60)),
            Duration::from_secs(10)
        );
        assert_eq!(
            renew_every(Duration::from_secs(3)),
            Duration::from_millis(500)
        );
        assert_eq!(
            renew_every(Duration::from_millis(10)),
            Duration::from_millis(100)
        );
    }
}
