//! Faults under whole materialize runs, injected by a store wrapper: the Nth call
//! of one kind of operation fails, a landed file vanishes between the listing and
//! the reads, two runs race for one destination. Every failure ends the run with
//! an error (never a panic), and the previously published views stay byte for byte.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path as ObjPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use psync_core::materialize::{
    MaterializeOptions, NoProgress, Progress, ViewReport, materialize_at,
};
use psync_core::{CoreError, EngineOptions, RunReport, View};
use psync_lake_io::Location;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Op {
    Put,
    Get,
    List,
    Copy,
}

/// What a [`Faulty`] store does besides passing every call to its inner store.
pub(crate) enum Fault {
    /// Fails the `nth` call (1-based) of `op`.
    FailNth(Op, usize),
    /// Deletes this file from the inner store as soon as a listing that returned
    /// it has ended: the file vanishes between the listing and the first read.
    VanishAfterList(ObjPath),
    /// Makes the runs sharing the store meet at the destination lock.
    MeetAtLock(Arc<Meeting>),
    /// Delays every call of `op` (a commit's renames are copies here) by this long.
    Delay(Op, Duration),
    /// Fails every put of a path that contains this text (a Delta table's commits).
    FailPutAt(String),
    /// Before a conditional put of a path that contains this text, another writer
    /// overwrites that path.
    WriteBeforePutAt(String),
}

/// A store wrapper that injects a [`Fault`] under whatever uses it.
pub(crate) struct Faulty {
    inner: Arc<dyn ObjectStore>,
    fault: Fault,
    seen: AtomicUsize,
}

impl fmt::Debug for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fault {
            Fault::FailNth(op, nth) => write!(f, "Faulty({op:?} #{nth})"),
            Fault::VanishAfterList(p) => write!(f, "Faulty(vanish {p})"),
            Fault::MeetAtLock(m) => write!(f, "Faulty(meet at lock, {} runs)", m.runs),
            Fault::Delay(op, d) => write!(f, "Faulty(delay {op:?} by {d:?})"),
            Fault::FailPutAt(part) => write!(f, "Faulty(puts at {part})"),
            Fault::WriteBeforePutAt(part) => write!(f, "Faulty(writes before puts at {part})"),
        }
    }
}

impl fmt::Display for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl Faulty {
    fn new(inner: Arc<dyn ObjectStore>, fault: Fault) -> Arc<Self> {
        Arc::new(Faulty {
            inner,
            fault,
            seen: AtomicUsize::new(0),
        })
    }

    async fn delay(&self, op: Op) {
        if let Fault::Delay(slow, by) = self.fault
            && op == slow
        {
            tokio::time::sleep(by).await;
        }
    }

    fn check(&self, op: Op) -> object_store::Result<()> {
        if let Fault::FailNth(fail, nth) = self.fault
            && op == fail
            && self.seen.fetch_add(1, Ordering::SeqCst) + 1 == nth
        {
            return Err(object_store::Error::Generic {
                store: "faulty",
                source: format!("injected {op:?} failure").into(),
            });
        }
        Ok(())
    }

    fn meeting(&self, location: &ObjPath) -> Option<&Meeting> {
        match &self.fault {
            Fault::MeetAtLock(m) if is_lock(location) => Some(m),
            _ => None,
        }
    }
}

fn is_lock(location: &ObjPath) -> bool {
    location.as_ref().ends_with("_psync/lock")
}

/// Where the runs sharing a [`Fault::MeetAtLock`] store meet: each run's
/// conditional create of `<dest>/_psync/lock` (or, for [`Meeting::at_takeover`],
/// its conditional overwrite of a stale one) waits until every run has reached
/// its own, so that they race for the lock at the same instant; removing the lock
/// waits until every run has tried to create it, so that the winner still holds
/// it when the others try. A run that never reaches the lock, or tries twice,
/// fails the test after [`MEET_TIMEOUT`] instead of hanging it.
pub(crate) struct Meeting {
    runs: usize,
    /// Whether the runs meet at a takeover (`PutMode::Update`) rather than a create.
    takeover: bool,
    arrived: tokio::sync::Barrier,
    arrivals: AtomicUsize,
    created: AtomicUsize,
    tried: AtomicUsize,
    removed: AtomicUsize,
}

const MEET_TIMEOUT: Duration = Duration::from_secs(60);

impl Meeting {
    fn new(runs: usize) -> Arc<Self> {
        Self::meet(runs, false)
    }

    /// Runs meet where they take over a stale lock.
    pub(crate) fn at_takeover(runs: usize) -> Arc<Self> {
        Self::meet(runs, true)
    }

    fn meet(runs: usize, takeover: bool) -> Arc<Self> {
        Arc::new(Meeting {
            runs,
            takeover,
            arrived: tokio::sync::Barrier::new(runs),
            arrivals: AtomicUsize::new(0),
            created: AtomicUsize::new(0),
            tried: AtomicUsize::new(0),
            removed: AtomicUsize::new(0),
        })
    }

    async fn create(
        &self,
        put: impl Future<Output = object_store::Result<PutResult>>,
    ) -> object_store::Result<PutResult> {
        if self.takeover && self.arrivals.fetch_add(1, Ordering::SeqCst) >= self.runs {
            // The winner renewing its lease, after the race.
            return put.await;
        }
        tokio::time::timeout(MEET_TIMEOUT, self.arrived.wait())
            .await
            .expect("every run reaches the lock once (one stopped before it, or tried again)");
        let result = put.await;
        if result.is_ok() {
            self.created.fetch_add(1, Ordering::SeqCst);
        }
        self.tried.fetch_add(1, Ordering::SeqCst);
        result
    }

    async fn remove(&self) {
        tokio::time::timeout(MEET_TIMEOUT, async {
            while self.tried.load(Ordering::SeqCst) < self.runs {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("every run tries to create the lock before it is removed");
        self.removed.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &ObjPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.check(Op::Put)?;
        self.delay(Op::Put).await;
        if let Fault::FailPutAt(part) = &self.fault
            && location.as_ref().contains(part.as_str())
        {
            return Err(object_store::Error::Generic {
                store: "faulty",
                source: format!("injected failure of the put of {location}").into(),
            });
        }
        if let Fault::WriteBeforePutAt(part) = &self.fault
            && location.as_ref().contains(part.as_str())
            && opts.mode != PutMode::Overwrite
        {
            self.inner.put(location, "{}".into()).await?;
        }
        if let Some(m) = self.meeting(location)
            && (opts.mode == PutMode::Create) != m.takeover
            && opts.mode != PutMode::Overwrite
        {
            return m.create(self.inner.put_opts(location, payload, opts)).await;
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.check(Op::Put)?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &ObjPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.check(Op::Get)?;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjPath>> {
        let Fault::MeetAtLock(meeting) = &self.fault else {
            return self.inner.delete_stream(locations);
        };
        let meeting = meeting.clone();
        let held = locations
            .then(move |location| {
                let meeting = meeting.clone();
                async move {
                    if let Ok(p) = &location
                        && is_lock(p)
                    {
                        meeting.remove().await;
                    }
                    location
                }
            })
            .boxed();
        self.inner.delete_stream(held)
    }

    fn list(
        &self,
        prefix: Option<&ObjPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        if let Err(e) = self.check(Op::List) {
            return futures::stream::once(async move { Err(e) }).boxed();
        }
        let Fault::VanishAfterList(victim) = &self.fault else {
            return self.inner.list(prefix);
        };
        let listed = Arc::new(AtomicBool::new(false));
        let seen = listed.clone();
        let target = victim.clone();
        let store = self.inner.clone();
        let victim = victim.clone();
        self.inner
            .list(prefix)
            .inspect(move |m| {
                if m.as_ref().is_ok_and(|m| m.location == target) {
                    seen.store(true, Ordering::SeqCst);
                }
            })
            .chain(
                futures::stream::once(async move {
                    if listed.load(Ordering::SeqCst) {
                        store
                            .delete(&victim)
                            .await
                            .expect("the listed file can be deleted");
                    }
                    None
                })
                .filter_map(futures::future::ready),
            )
            .boxed()
    }

    fn list_with_offset(
        &self,
        prefix: Option<&ObjPath>,
        offset: &ObjPath,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjPath>,
    ) -> object_store::Result<ListResult> {
        self.check(Op::List)?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &ObjPath,
        to: &ObjPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.check(Op::Copy)?;
        self.delay(Op::Copy).await;
        self.inner.copy_opts(from, to, options).await
    }
}

/// The options of a full run of every view.
pub(crate) fn options(source: &str, dest: &str, stale_lock_after: Duration) -> MaterializeOptions {
    MaterializeOptions {
        health: true,
        source_at: Default::default(),
        format: Default::default(),
        source: source.to_string(),
        dest: dest.to_string(),
        views: View::ALL.to_vec(),
        engine: EngineOptions {
            threads: Some(2),
            ..Default::default()
        },
        lease: psync_core::LeaseOptions {
            timeout: stale_lock_after,
            break_lock: false,
        },
        stop: Default::default(),
        mode: psync_core::RunMode::Full,
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A local folder as a location, through the plain local store.
pub(crate) fn plain(path: &Path) -> Location {
    Location::parse(&path.display().to_string()).unwrap()
}

/// The same location with its store wrapped by `fault`.
pub(crate) fn faulty(location: &Location, fault: Fault) -> Location {
    let mut l = location.clone();
    l.store = Faulty::new(location.store.clone(), fault);
    l
}

pub(crate) fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample")
}

fn snapshot(dest: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = ["id_graph", "external_id_mapping", "profile_traits"]
        .iter()
        .map(|v| {
            let f = dest.join(v).join(format!("{v}.parquet"));
            (f.display().to_string(), std::fs::read(&f).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn injected_store_failures_end_runs_cleanly_and_keep_old_views() {
    let sample = sample();
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("views");
    let opts = options(
        &sample.display().to_string(),
        &dest.display().to_string(),
        Duration::ZERO,
    );
    let rt = runtime();
    rt.block_on(materialize_at(
        &opts,
        plain(&sample),
        plain(&dest),
        &NoProgress,
    ))
    .unwrap();
    let before = snapshot(&dest);
    let expected_rows: Vec<_> = ["id_graph", "external_id_mapping", "profile_traits"]
        .iter()
        .map(|v| crate::util::read_rows(&dest.join(v)))
        .collect();

    let mut failures = 0;
    for op in [Op::Put, Op::Get, Op::List, Op::Copy] {
        for nth in [1, 2, 3, 5, 8] {
            let faulty = Faulty::new(
                Arc::new(psync_lake_io::LocalStore::new()),
                Fault::FailNth(op, nth),
            );
            let mut d = plain(&dest);
            d.store = faulty.clone();
            // Source and destination share file://, so reads go through the faults too.
            let mut s = plain(&sample);
            s.store = faulty;
            match rt.block_on(materialize_at(&opts, s, d, &NoProgress)) {
                Err(e) => {
                    failures += 1;
                    assert!(e.to_string().contains("injected"), "{op:?} #{nth}: {e}");
                    // Published views untouched, whatever step failed (a failed rename
                    // leaves the views it had not reached, which are the old ones).
                    let after = snapshot(&dest);
                    for ((f, a), (_, b)) in before.iter().zip(&after) {
                        let same_bytes = a == b;
                        let v = Path::new(f).parent().unwrap();
                        assert!(
                            same_bytes
                                || crate::util::read_rows(v)
                                    == expected_rows
                                        [before.iter().position(|x| &x.0 == f).unwrap()],
                            "{op:?} #{nth}: {f} damaged"
                        );
                    }
                }
                Ok(_) => {
                    for (i, v) in ["id_graph", "external_id_mapping", "profile_traits"]
                        .iter()
                        .enumerate()
                    {
                        assert_eq!(
                            crate::util::read_rows(&dest.join(v)),
                            expected_rows[i],
                            "{op:?} #{nth}"
                        );
                    }
                }
            }
        }
    }
    assert!(
        failures >= 10,
        "most injected faults must hit the run ({failures})"
    );
}

/// The views' rows, from a run's destination contents.
pub(crate) fn view_rows(contents: &BTreeMap<String, Vec<u8>>) -> Vec<Vec<Vec<String>>> {
    let tmp = tempfile::tempdir().unwrap();
    crate::util::write_tree(contents, tmp.path());
    ["id_graph", "external_id_mapping", "profile_traits"]
        .iter()
        .map(|v| crate::util::read_rows(&tmp.path().join(v)))
        .collect()
}

/// Deletes a file when a run first enters a stage.
struct DeleteAt {
    stage: &'static str,
    file: PathBuf,
    done: AtomicBool,
}

impl Progress for DeleteAt {
    fn stage(&self, name: &str) {
        if name == self.stage && !self.done.swap(true, Ordering::SeqCst) {
            std::fs::remove_file(&self.file).expect("the landed file can be deleted");
        }
    }

    fn view_done(&self, _: &ViewReport) {}
}

#[test]
fn a_landed_file_deleted_under_a_run_is_named_and_changes_nothing() {
    let rt = runtime();
    // Right after the listing (its footer is gone), and after the footers were
    // read, before the scans (its data is gone).
    for moment in ["after the listing", "after the footers"] {
        let tmp = tempfile::tempdir().unwrap();
        let lake = tmp.path().join("lake");
        crate::util::copy_dir(&sample(), &lake);
        let dest = tmp.path().join("views");
        let opts = options(
            &lake.display().to_string(),
            &dest.display().to_string(),
            Duration::from_secs(3600),
        );
        rt.block_on(materialize_at(
            &opts,
            plain(&lake),
            plain(&dest),
            &NoProgress,
        ))
        .unwrap();
        let before = rt.block_on(crate::util::contents(&plain(&dest)));

        let victim = lake.join("profile_traits_updates/day=2024-01-01/part-00002.parquet");
        let (source, progress): (_, Box<dyn Progress>) = match moment {
            "after the listing" => {
                let path = ObjPath::from_absolute_path(&victim).unwrap();
                let source = faulty(&plain(&lake), Fault::VanishAfterList(path));
                (source, Box::new(NoProgress))
            }
            _ => {
                let progress = DeleteAt {
                    stage: "id_graph",
                    file: victim.clone(),
                    done: AtomicBool::new(false),
                };
                (plain(&lake), Box::new(progress))
            }
        };
        let result = rt.block_on(materialize_at(
            &opts,
            source,
            plain(&dest),
            progress.as_ref(),
        ));
        assert!(!victim.exists(), "{moment}: the fault deleted the file");
        let err = match result {
            Ok(r) => panic!(
                "{moment}: the run succeeded without {}: {r:?}",
                victim.display()
            ),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(&victim.display().to_string()),
            "{moment}: the error names the file: {err}"
        );
        assert!(
            err.contains("vanished after the lake was listed"),
            "{moment}: the error says why: {err}"
        );
        assert!(!err.contains('\n'), "{moment}: one line: {err}");
        assert_eq!(
            rt.block_on(crate::util::contents(&plain(&dest))),
            before,
            "{moment}: the destination is as the last run left it ({err})"
        );
        // The next run reads the lake as it now is.
        rt.block_on(materialize_at(
            &opts,
            plain(&lake),
            plain(&dest),
            &NoProgress,
        ))
        .unwrap_or_else(|e| panic!("{moment}: the next run: {e}"));
    }
}

/// Starts two runs of every view from `source` into `dest` together (they meet
/// at the lock), and checks that exactly one commits: the other stops with the
/// lock error, and `dest` holds one run record and views equal to `expected`.
pub(crate) fn two_runs_together(
    source: &Path,
    dest: &Location,
    expected: &[Vec<Vec<String>>],
) -> (RunReport, String) {
    two_runs_meeting(
        source,
        dest,
        expected,
        Meeting::new(2),
        Duration::from_secs(3600),
    )
}

/// [`two_runs_together`], the runs meeting at `meeting`, with this lease timeout.
pub(crate) fn two_runs_meeting(
    source: &Path,
    dest: &Location,
    expected: &[Vec<Vec<String>>],
    meeting: Arc<Meeting>,
    lease_timeout: Duration,
) -> (RunReport, String) {
    let opts = options(&source.display().to_string(), &dest.display, lease_timeout);
    let shared = faulty(dest, Fault::MeetAtLock(meeting.clone()));
    let rt = runtime();
    let (a, b) = rt.block_on(async {
        tokio::join!(
            materialize_at(&opts, plain(source), shared.clone(), &NoProgress),
            materialize_at(&opts, plain(source), shared.clone(), &NoProgress),
        )
    });
    let (winner, loser) = match (a, b) {
        (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
        (Ok(a), Ok(b)) => panic!("both runs committed: {} and {}", a.run_id, b.run_id),
        (Err(a), Err(b)) => panic!("neither run committed: {a} / {b}"),
    };
    let message = loser.to_string();
    let lock = dest.url_of(&dest.child(&["_psync", "lock"]));
    match &loser {
        CoreError::Locked { url, holder, .. } => {
            assert_eq!(url, &lock);
            assert_eq!(holder, &winner.run_id, "the error names the winner");
        }
        other => panic!("the loser stops with the lock error, not: {other}"),
    }
    assert!(
        message.contains(&lock) && !message.contains('\n'),
        "{message}"
    );
    assert_eq!(meeting.tried.load(Ordering::SeqCst), 2, "both runs raced");
    assert_eq!(
        meeting.created.load(Ordering::SeqCst),
        1,
        "one took the lock"
    );
    assert_eq!(
        meeting.removed.load(Ordering::SeqCst),
        1,
        "only the winner removed the lock"
    );

    let contents = rt.block_on(crate::util::contents(dest));
    let runs: Vec<&String> = contents
        .keys()
        .filter(|k| k.starts_with("_psync/runs/"))
        .collect();
    assert_eq!(
        runs,
        [&format!("_psync/runs/{}.json", winner.run_id)],
        "one run record, the winner's"
    );
    let left: Vec<&String> = contents
        .keys()
        .filter(|k| *k == "_psync/lock" || k.starts_with("_psync/tmp/"))
        .collect();
    assert!(left.is_empty(), "no lock or staging left: {left:?}");
    let last: serde_json::Value =
        serde_json::from_slice(&contents["_psync/last_run.json"]).unwrap();
    assert_eq!(last["run_id"], winner.run_id.as_str());
    assert_eq!(view_rows(&contents), expected, "the views of a normal run");
    (winner, message)
}

/// Rows of the views of a plain local run.
pub(crate) fn normal_run_rows() -> Vec<Vec<Vec<String>>> {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("views");
    let opts = options(
        &sample().display().to_string(),
        &dest.display().to_string(),
        Duration::from_secs(3600),
    );
    let report = runtime()
        .block_on(materialize_at(
            &opts,
            plain(&sample()),
            plain(&dest),
            &NoProgress,
        ))
        .unwrap();
    assert_eq!(report.views.len(), 3);
    ["id_graph", "external_id_mapping", "profile_traits"]
        .iter()
        .map(|v| crate::util::read_rows(&dest.join(v)))
        .collect()
}

#[test]
fn two_runs_started_together_on_local_disk_exactly_one_commits() {
    let expected = normal_run_rows();
    let tmp = tempfile::tempdir().unwrap();
    two_runs_together(&sample(), &plain(&tmp.path().join("views")), &expected);
}

#[test]
fn two_runs_started_together_on_s3_exactly_one_commits() {
    let Some(s3) = crate::remote::Remote::s3() else {
        return;
    };
    let expected = normal_run_rows();
    let dest = s3.location(&crate::remote::unique("race"));
    two_runs_together(&sample(), &dest, &expected);
}

#[test]
fn two_runs_started_together_on_azure_exactly_one_commits() {
    let Some(azure) = crate::remote::Remote::azure() else {
        return;
    };
    let expected = normal_run_rows();
    let dest = azure.location(&crate::remote::unique("race"));
    two_runs_together(&sample(), &dest, &expected);
}
