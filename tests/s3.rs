//! S3 through a real S3-compatible server (moto, started by `.ci/run`, endpoint in
//! `PSYNC_S3_ENDPOINT`): the same views as on local disk, the storage operations
//! publishing relies on, and the destination lock. Without a server these tests
//! skip, except under CI, where they fail.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::util::{read_rows, run, run_ok};

const BUCKET: &str = "psync-test";

/// The server's endpoint, or `None` (skip) outside CI.
fn endpoint() -> Option<String> {
    match std::env::var("PSYNC_S3_ENDPOINT") {
        Ok(e) => Some(e),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but PSYNC_S3_ENDPOINT is not: .ci/run starts the S3 server")
        }
        Err(_) => {
            eprintln!("skipping: no S3 server (set PSYNC_S3_ENDPOINT, as .ci/run does)");
            None
        }
    }
}

fn s3(endpoint: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .build()
            .unwrap(),
    )
}

/// The binary with the server's settings in its environment.
fn run_s3(endpoint: &str, args: &[&str]) -> Output {
    std::process::Command::new(crate::util::bin())
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ALLOW_HTTP", "true")
        .output()
        .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Copies a local folder under `prefix` in the bucket.
async fn upload(store: &dyn ObjectStore, dir: &Path, prefix: &str) {
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

/// Copies everything under `prefix` in the bucket into a local folder.
async fn download(store: &dyn ObjectStore, prefix: &str, dir: &Path) {
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

fn unique(name: &str) -> String {
    format!(
        "{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[test]
fn s3_views_equal_local_views() {
    let Some(ep) = endpoint() else { return };
    let store = s3(&ep);
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample");
    let prefix = unique("lake");
    rt().block_on(upload(store.as_ref(), &sample, &prefix));

    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    run_ok(&[
        "materialize",
        "--source",
        sample.to_str().unwrap(),
        "--dest",
        local.to_str().unwrap(),
        "--quiet",
    ]);
    let src = format!("s3://{BUCKET}/{prefix}");
    let dst = format!("s3://{BUCKET}/{prefix}-views");
    let out = run_s3(
        &ep,
        &["materialize", "--source", &src, "--dest", &dst, "--quiet"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fetched = tmp.path().join("fetched");
    rt().block_on(download(
        store.as_ref(),
        &format!("{prefix}-views"),
        &fetched,
    ));
    for view in ["id_graph", "external_id_mapping", "profile_traits"] {
        assert_eq!(
            read_rows(&fetched.join(view)),
            read_rows(&local.join(view)),
            "{view}"
        );
    }
    // The shell reads S3 too: published views and landed tables.
    let out = run_s3(
        &ep,
        &[
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
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n\n300\nn\n344\n");
}

#[test]
fn s3_errors_are_one_line() {
    let Some(ep) = endpoint() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("v");
    for (args, needle) in [
        (
            vec![
                "materialize",
                "--source",
                "s3://no-such-bucket/x",
                "--dest",
                dest.to_str().unwrap(),
            ],
            "no-such-bucket",
        ),
        (
            vec![
                "materialize",
                "--source",
                &format!("s3://{BUCKET}/no/such/prefix") as &str,
                "--dest",
                dest.to_str().unwrap(),
            ],
            "no tables under",
        ),
        (
            vec![
                "materialize",
                "--source",
                "s3://b/x",
                "--dest",
                dest.to_str().unwrap(),
                "--s3-endpoint",
                "http://127.0.0.1:9",
                "--retries",
                "1",
            ],
            "127.0.0.1:9",
        ),
    ] {
        let owned: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let refs: Vec<&str> = owned.iter().map(|s| s.as_str()).collect();
        let out = run_s3(&ep, &refs);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{err}");
        assert!(!dest.exists(), "nothing written on error");
    }
}

/// What publishing relies on, checked on every store it runs on.
async fn conformance(store: &dyn ObjectStore, root: &str) {
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
    assert_eq!(
        &store.get(&p("lock")).await.unwrap().bytes().await.unwrap()[..],
        b"a"
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

#[test]
fn storage_conformance_local_and_s3() {
    let tmp = tempfile::tempdir().unwrap();
    let local = LocalFileSystem::new_with_prefix(tmp.path()).unwrap();
    rt().block_on(conformance(&local, "c"));
    let Some(ep) = endpoint() else { return };
    rt().block_on(conformance(s3(&ep).as_ref(), &unique("conformance")));
}

#[test]
fn a_held_lock_on_s3_stops_a_run() {
    let Some(ep) = endpoint() else { return };
    let store = s3(&ep);
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample");
    let prefix = unique("locked");
    let dst = format!("s3://{BUCKET}/{prefix}");
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
    let out = run_s3(&ep, &args);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("locked by run other"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<_> = rt()
        .block_on(
            store
                .list(Some(&ObjPath::from(prefix.as_str())))
                .try_collect::<Vec<_>>(),
        )
        .unwrap();
    assert_eq!(
        listed.len(),
        1,
        "nothing but the lock was written: {listed:?}"
    );
    rt().block_on(store.delete(&lock)).unwrap();
    let out = run_s3(&ep, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        rt().block_on(store.head(&lock)).is_err(),
        "the lock is released"
    );
}

#[test]
fn a_held_lock_stops_a_local_run_and_a_stale_one_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample");
    let dest = tmp.path().join("v");
    run_ok(&[
        "materialize",
        "--source",
        sample.to_str().unwrap(),
        "--dest",
        dest.to_str().unwrap(),
        "--quiet",
    ]);
    let before = std::fs::read(dest.join("id_graph/id_graph.parquet")).unwrap();
    std::fs::write(dest.join("_psync/lock"), r#"{"run_id":"ghost"}"#).unwrap();
    let out = run(&[
        "materialize",
        "--source",
        sample.to_str().unwrap(),
        "--dest",
        dest.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("locked by run ghost"));
    assert_eq!(
        std::fs::read(dest.join("id_graph/id_graph.parquet")).unwrap(),
        before
    );
    run_ok(&[
        "materialize",
        "--source",
        sample.to_str().unwrap(),
        "--dest",
        dest.to_str().unwrap(),
        "--quiet",
        "--stale-lock-minutes",
        "0",
    ]);
    assert!(!dest.join("_psync/lock").exists(), "the lock is released");
}
