//! Faults: a store wrapper that fails the Nth call of one kind of operation,
//! under a whole materialize run. Every failure ends the run with an error
//! (never a panic), and the previously published views stay byte for byte.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use psync_core::materialize::{MaterializeOptions, NoProgress, materialize_at};
use psync_core::{EngineOptions, View};
use psync_lake_io::Location;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Put,
    Get,
    List,
    Copy,
}

/// Fails the `nth` call (1-based) of `op`; everything else goes to the inner store.
struct Faulty {
    inner: LocalFileSystem,
    op: Op,
    nth: usize,
    seen: AtomicUsize,
}

impl fmt::Debug for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({:?} #{})", self.op, self.nth)
    }
}

impl fmt::Display for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl Faulty {
    fn check(&self, op: Op) -> object_store::Result<()> {
        if op == self.op && self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.nth {
            return Err(object_store::Error::Generic {
                store: "faulty",
                source: format!("injected {op:?} failure").into(),
            });
        }
        Ok(())
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
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&ObjPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.check(Op::List) {
            Ok(()) => self.inner.list(prefix),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
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
        self.inner.copy_opts(from, to, options).await
    }
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
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample");
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("views");
    let opts = MaterializeOptions {
        source: sample.display().to_string(),
        dest: dest.display().to_string(),
        views: View::ALL.to_vec(),
        engine: EngineOptions {
            threads: Some(2),
            ..Default::default()
        },
        stale_lock_after: std::time::Duration::ZERO,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let plain = |path: &Path| Location::parse(&path.display().to_string()).unwrap();
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
            let faulty = Arc::new(Faulty {
                inner: LocalFileSystem::new(),
                op,
                nth,
                seen: AtomicUsize::new(0),
            });
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
