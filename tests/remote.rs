//! The remote stores the tests run against, both real servers on 127.0.0.1 that
//! `.ci/run` starts: an S3-compatible server (moto, endpoint in `PSYNC_S3_ENDPOINT`)
//! and Azurite, the Azure Blob emulator (the account's Blob endpoint in
//! `PSYNC_AZURE_ENDPOINT`, e.g. `http://127.0.0.1:10000/devstoreaccount1`). Each has
//! the bucket or container [`BUCKET`]. Without its server a test skips, except
//! under CI, where it fails.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use psync_lake_io::{AzureOptions, Location, StoreOptions};

/// The S3 bucket, and the Azure container, of the tests.
pub(crate) const BUCKET: &str = "psync-test";

/// Azurite's account.
pub(crate) const AZURE_ACCOUNT: &str = "devstoreaccount1";

/// Azurite's well-known account key (public: every emulator has it).
pub(crate) const AZURE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Which kind of server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    S3,
    Azure,
}

/// A server the tests can use, with the settings the binary needs for it.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    pub kind: Kind,
    /// For S3 the server's URL; for Azure the account's Blob endpoint.
    pub endpoint: String,
}

impl Remote {
    /// The S3 server, or `None` (skip) outside CI.
    pub fn s3() -> Option<Remote> {
        Self::from_env(Kind::S3, "PSYNC_S3_ENDPOINT", "the S3 server")
    }

    /// Azurite, or `None` (skip) outside CI.
    pub fn azure() -> Option<Remote> {
        Self::from_env(Kind::Azure, "PSYNC_AZURE_ENDPOINT", "Azurite")
    }

    fn from_env(kind: Kind, var: &str, what: &str) -> Option<Remote> {
        match std::env::var(var) {
            Ok(endpoint) => Some(Remote {
                kind,
                endpoint: endpoint.trim_end_matches('/').to_string(),
            }),
            Err(_) if std::env::var_os("CI").is_some() => {
                panic!("CI is set but {var} is not: .ci/run starts {what}")
            }
            Err(_) => {
                eprintln!("skipping: no {what} (set {var}, as .ci/run does)");
                None
            }
        }
    }

    /// The URL scheme of the store.
    pub fn scheme(&self) -> &'static str {
        match self.kind {
            Kind::S3 => "s3",
            Kind::Azure => "az",
        }
    }

    /// The URL of `prefix` in the test bucket or container.
    pub fn url(&self, prefix: &str) -> String {
        format!("{}://{BUCKET}/{prefix}", self.scheme())
    }

    /// The endpoint setting for a server at `base` (a proxy in front of this one):
    /// for Azure, with the account's path.
    pub fn endpoint_at(&self, base: &str) -> String {
        match self.kind {
            Kind::S3 => base.to_string(),
            Kind::Azure => format!("{}/{AZURE_ACCOUNT}", base.trim_end_matches('/')),
        }
    }

    /// `host:port` of the server.
    pub fn authority(&self) -> String {
        let rest = self
            .endpoint
            .split_once("://")
            .map_or(self.endpoint.as_str(), |(_, r)| r);
        rest.split('/').next().unwrap_or_default().to_string()
    }

    /// The bucket or container as a plain object store, with the test credentials.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        match self.kind {
            Kind::S3 => Arc::new(
                AmazonS3Builder::new()
                    .with_bucket_name(BUCKET)
                    .with_endpoint(&self.endpoint)
                    .with_allow_http(true)
                    .with_region("us-east-1")
                    .with_access_key_id("test")
                    .with_secret_access_key("test")
                    .with_conditional_put(S3ConditionalPut::ETagMatch)
                    .build()
                    .unwrap(),
            ),
            Kind::Azure => Arc::new(
                MicrosoftAzureBuilder::new()
                    .with_account(AZURE_ACCOUNT)
                    .with_access_key(AZURE_KEY)
                    .with_container_name(BUCKET)
                    .with_endpoint(self.endpoint.clone())
                    .with_allow_http(true)
                    .build()
                    .unwrap(),
            ),
        }
    }

    /// The store options of the test server.
    pub fn options(&self) -> StoreOptions {
        match self.kind {
            Kind::S3 => StoreOptions {
                endpoint: Some(self.endpoint.clone()),
                allow_http: Some(true),
                region: Some("us-east-1".into()),
                ..Default::default()
            },
            Kind::Azure => StoreOptions {
                azure: AzureOptions {
                    account: Some(AZURE_ACCOUNT.into()),
                    access_key: Some(AZURE_KEY.into()),
                    endpoint: Some(self.endpoint.clone()),
                    allow_http: Some(true),
                    ..Default::default()
                },
                ..Default::default()
            },
        }
    }

    /// `prefix` in the test bucket or container as a run's location (the store a
    /// run builds from the URL; for S3 with the test credentials whatever the
    /// environment says).
    pub fn location(&self, prefix: &str) -> Location {
        let mut l = Location::parse_with(&self.url(prefix), &self.options()).unwrap();
        if self.kind == Kind::S3 {
            l.store = self.store();
        }
        l
    }

    /// The environment that points the binary at the server (the standard
    /// variables of each cloud, no flags).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self.kind {
            Kind::S3 => vec![
                ("AWS_ENDPOINT_URL", self.endpoint.clone()),
                ("AWS_ACCESS_KEY_ID", "test".into()),
                ("AWS_SECRET_ACCESS_KEY", "test".into()),
                ("AWS_REGION", "us-east-1".into()),
                ("AWS_ALLOW_HTTP", "true".into()),
            ],
            Kind::Azure => vec![
                ("AZURE_STORAGE_ACCOUNT_NAME", AZURE_ACCOUNT.into()),
                ("AZURE_STORAGE_ACCOUNT_KEY", AZURE_KEY.into()),
                ("AZURE_STORAGE_ENDPOINT", self.endpoint.clone()),
                ("AZURE_ALLOW_HTTP", "true".into()),
            ],
        }
    }

    /// The binary, its environment pointing at the server.
    pub fn command(&self) -> Command {
        let mut c = Command::new(crate::util::bin());
        c.env("NO_COLOR", "1").envs(self.env());
        c
    }

    /// Runs the binary with the server's settings in its environment.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }
}

/// A name no other test (or earlier run) uses.
pub(crate) fn unique(name: &str) -> String {
    format!(
        "{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// A current-thread runtime for the tests' own store calls.
pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Copies a local folder under `prefix` in the store.
pub(crate) async fn upload(store: &dyn ObjectStore, dir: &Path, prefix: &str) {
    for file in crate::util::walk(dir) {
        let rel = file
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let bytes = std::fs::read(&file).unwrap();
        store
            .put(
                &ObjPath::from(format!("{prefix}/{rel}")),
                PutPayload::from(bytes),
            )
            .await
            .unwrap();
    }
}

/// Copies everything under `prefix` in the store into a local folder.
pub(crate) async fn download(store: &dyn ObjectStore, prefix: &str, dir: &Path) {
    let metas: Vec<_> = store
        .list(Some(&ObjPath::from(prefix)))
        .try_collect()
        .await
        .unwrap();
    for m in metas {
        let rel = m
            .location
            .as_ref()
            .strip_prefix(prefix)
            .unwrap()
            .trim_start_matches('/');
        let target = dir.join(rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(
            target,
            store.get(&m.location).await.unwrap().bytes().await.unwrap(),
        )
        .unwrap();
    }
}

/// What publishing relies on, checked on every store it runs on: a conditional
/// create, a conditional overwrite of exactly one version, a rename that replaces
/// the target whole, and a listing that sees exactly what is there.
pub(crate) async fn conformance(store: &dyn ObjectStore, root: &str) {
    let p = |s: &str| ObjPath::from(format!("{root}/{s}"));
    let create = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    store
        .put_opts(&p("lock"), PutPayload::from_static(b"a"), create.clone())
        .await
        .unwrap();
    let second = store
        .put_opts(&p("lock"), PutPayload::from_static(b"b"), create)
        .await;
    assert!(
        matches!(second, Err(object_store::Error::AlreadyExists { .. })),
        "{second:?}"
    );
    let held = store.get(&p("lock")).await.unwrap();
    let first = UpdateVersion {
        e_tag: held.meta.e_tag.clone(),
        version: held.meta.version.clone(),
    };
    assert_eq!(&held.bytes().await.unwrap()[..], b"a");
    // A conditional overwrite (the lease's renewal and takeover) replaces exactly
    // the version it names, once.
    let renewed = store
        .put_opts(
            &p("lock"),
            PutPayload::from_static(b"c"),
            PutMode::Update(first.clone()).into(),
        )
        .await
        .unwrap();
    let again = store
        .put_opts(
            &p("lock"),
            PutPayload::from_static(b"d"),
            PutMode::Update(first).into(),
        )
        .await;
    assert!(
        matches!(again, Err(object_store::Error::Precondition { .. })),
        "{again:?}"
    );
    store
        .put_opts(
            &p("lock"),
            PutPayload::from_static(b"e"),
            PutMode::Update(UpdateVersion::from(renewed)).into(),
        )
        .await
        .unwrap();
    assert_eq!(
        &store.get(&p("lock")).await.unwrap().bytes().await.unwrap()[..],
        b"e"
    );
    // Overwrite is whole.
    store
        .put(&p("view/v.parquet"), PutPayload::from_static(b"old"))
        .await
        .unwrap();
    store
        .put(&p("tmp/v.parquet"), PutPayload::from_static(b"new"))
        .await
        .unwrap();
    store
        .rename(&p("tmp/v.parquet"), &p("view/v.parquet"))
        .await
        .unwrap();
    assert_eq!(
        &store
            .get(&p("view/v.parquet"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()[..],
        b"new"
    );
    assert!(
        matches!(
            store.head(&p("tmp/v.parquet")).await,
            Err(object_store::Error::NotFound { .. })
        ),
        "a rename removes its source"
    );
    // List after write sees exactly what is there.
    let listed: Vec<_> = store
        .list(Some(&p("view")))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(listed, [format!("{root}/view/v.parquet")]);
    store.delete(&p("lock")).await.unwrap();
    assert!(store.head(&p("lock")).await.is_err());
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The sample lake uploaded to `remote`, materialized there (source and
/// destination remote), equals a local run; the shell reads the remote views and
/// landed tables.
pub(crate) fn views_equal_local_views(remote: &Remote) {
    let store = remote.store();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample");
    let prefix = unique("lake");
    rt().block_on(upload(store.as_ref(), &sample, &prefix));

    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    crate::util::materialize_ok(&sample, &local, &["--quiet"]);
    let src = remote.url(&prefix);
    let dst = remote.url(&format!("{prefix}-views"));
    let out = remote.run(&["materialize", "--source", &src, "--dest", &dst, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let fetched = tmp.path().join("fetched");
    rt().block_on(download(
        store.as_ref(),
        &format!("{prefix}-views"),
        &fetched,
    ));
    for view in ["id_graph", "external_id_mapping", "profile_traits"] {
        assert_eq!(
            crate::util::read_rows(&fetched.join(view)),
            crate::util::read_rows(&local.join(view)),
            "{view}"
        );
    }
    // `status` finds every published file as the run recorded it (the record
    // comes from HEAD responses, status lists the store).
    let out = remote.run(&["status", "--dest", &dst]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The shell reads the remote store too: published views and landed tables.
    let out = remote.run(&[
        "query",
        "--source",
        &src,
        "--dest",
        &dst,
        "--format",
        "csv",
        "-c",
        "SELECT count(*) AS n FROM profile_traits",
        "-c",
        "SELECT count(*) AS n FROM id_graph_updates",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n\n300\nn\n344\n");
    // Files on the store queried by path (a folder: every file under it), with
    // the same store settings; a glob, which only local paths expand, says so.
    let folder = remote.url(&format!("{prefix}/id_graph_updates/"));
    let query =
        |sql: String| remote.run(&["query", "--source", &src, "--format", "csv", "-c", &sql]);
    let out = query(format!("SELECT count(*) AS n FROM '{folder}'"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n\n344\n");
    let out = query(format!("SELECT count(*) AS n FROM '{folder}**/*.parquet'"));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("globs work in local paths only"),
        "{}",
        stderr(&out)
    );
}

/// Another run's lock on `remote` stops a run before it writes anything but the
/// lease check's clock probe; once the lock is gone a run succeeds and releases
/// its own.
pub(crate) fn a_held_lock_stops_a_run(remote: &Remote) {
    let store = remote.store();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample");
    let prefix = unique("locked");
    let dst = remote.url(&prefix);
    // Another run's lock, created the way runs create it.
    let lock = ObjPath::from(format!("{prefix}/_psync/lock"));
    let create = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    rt().block_on(store.put_opts(
        &lock,
        PutPayload::from_static(br#"{"run_id":"other"}"#),
        create,
    ))
    .unwrap();
    let args = [
        "materialize",
        "--source",
        sample.to_str().unwrap(),
        "--dest",
        &dst,
        "--quiet",
    ];
    let out = remote.run(&args);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("locked by run other"),
        "{}",
        stderr(&out)
    );
    let listed: Vec<_> = rt()
        .block_on(
            store
                .list(Some(&ObjPath::from(prefix.as_str())))
                .try_collect::<Vec<_>>(),
        )
        .unwrap();
    let mut written: Vec<_> = listed
        .iter()
        .map(|m| {
            m.location
                .as_ref()
                .trim_start_matches(&format!("{prefix}/"))
                .to_string()
        })
        .collect();
    written.sort();
    assert_eq!(
        written,
        ["_psync/clock", "_psync/lock"],
        "nothing but the lock (and the lease check's clock probe) was written"
    );
    rt().block_on(store.delete(&lock)).unwrap();
    let out = remote.run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        rt().block_on(store.head(&lock)).is_err(),
        "the lock is released"
    );
}
