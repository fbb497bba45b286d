//! Azure Blob Storage through Azurite, a real Blob service on 127.0.0.1 that
//! `.ci/run` starts (see [`crate::remote`]): the same views as on local disk, the
//! storage operations publishing relies on, the destination lock, each way of
//! giving settings (environment, flags, account key, SAS, the URL forms), one-line
//! errors for bad ones, and on the wire (a proxy in front of Azurite) that
//! publishing replaces each view with a block-list commit, never Copy Blob.
//! Without Azurite these tests skip, except under CI, where they fail.

use std::path::Path;
use std::process::Output;

use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutPayload};

use crate::remote::{AZURE_ACCOUNT, AZURE_KEY, BUCKET, Remote, conformance, rt, unique, upload};
use crate::s3::{Proxy, Verdict};
use crate::util::{contents, materialize_ok, read_rows};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn sample() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample")
}

/// The binary with no Azure settings from the environment: only `args` count.
fn run_clean(args: &[&str]) -> Output {
    let mut c = std::process::Command::new(crate::util::bin());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AZURE") {
            c.env_remove(k);
        }
    }
    c.env("NO_COLOR", "1").args(args).output().unwrap()
}

#[test]
fn azure_views_equal_local_views() {
    let Some(azure) = Remote::azure() else { return };
    crate::remote::views_equal_local_views(&azure);
}

#[test]
fn storage_conformance_on_azure() {
    let Some(azure) = Remote::azure() else { return };
    // The store a run builds (its renames are block-list commits), not a plain one.
    let location = azure.location(&unique("conformance"));
    rt().block_on(conformance(
        location.store.as_ref(),
        location.prefix.as_ref(),
    ));
    // A file larger than one block goes up in several blocks and one commit.
    let big: Vec<u8> = (0..25 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let (from, to) = (
        location.child(&["tmp", "big.parquet"]),
        location.child(&["view", "big.parquet"]),
    );
    let store = location.store.clone();
    rt().block_on(async {
        store
            .put(&to, PutPayload::from_static(b"old"))
            .await
            .unwrap();
        store
            .put(&from, PutPayload::from(big.clone()))
            .await
            .unwrap();
        store.rename(&from, &to).await.unwrap();
        let got = store.get(&to).await.unwrap().bytes().await.unwrap();
        assert!(got[..] == big[..], "the renamed object is the whole source");
        assert!(store.head(&from).await.is_err(), "the source is gone");
    });
}

#[test]
fn a_held_lock_on_azure_stops_a_run() {
    let Some(azure) = Remote::azure() else { return };
    crate::remote::a_held_lock_stops_a_run(&azure);
}

/// An account SAS (version 2019-12-12) with the same permissions: Azurite refuses
/// it for Blob Batch, through which deletes go, and object_store's message for
/// that failure shows the request's URL, signature included.
fn account_sas() -> String {
    let expiry = (chrono::Utc::now() + chrono::Duration::hours(2))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let (sp, ss, srt, spr, sv) = ("racwdl", "b", "sco", "https,http", "2019-12-12");
    let to_sign = format!("{AZURE_ACCOUNT}\n{sp}\n{ss}\n{srt}\n\n{expiry}\n\n{spr}\n{sv}\n");
    let sig = sign(&to_sign);
    format!("sv={sv}&ss={ss}&srt={srt}&sp={sp}&se={expiry}&spr={spr}&sig={sig}")
}

/// The percent-encoded base64 HMAC-SHA256 of `to_sign` under the account key.
fn sign(to_sign: &str) -> String {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD
        .decode(AZURE_KEY)
        .unwrap();
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
        to_sign.as_bytes(),
    );
    base64::engine::general_purpose::STANDARD
        .encode(tag.as_ref())
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

/// A container SAS (a service SAS, `sr=c`) for the test container: read, add,
/// create, write, delete, list, signed with the account key as Azure specifies
/// for version 2019-12-12. (A container SAS, as the usual credential of a lake
/// writer; Azurite refuses an account SAS for the Blob Batch that deletes go
/// through.)
fn container_sas() -> String {
    let expiry = (chrono::Utc::now() + chrono::Duration::hours(2))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let (sp, spr, sv) = ("racwdl", "https,http", "2019-12-12");
    let resource = format!("/blob/{AZURE_ACCOUNT}/{BUCKET}");
    // permissions, start, expiry, resource, identifier, IP, protocol, version,
    // signed resource, snapshot time, then the five response-header overrides.
    let to_sign = [
        sp, "", &expiry, &resource, "", "", spr, sv, "c", "", "", "", "", "", "",
    ]
    .join("\n");
    let sig = sign(&to_sign);
    format!("sv={sv}&sr=c&sp={sp}&se={expiry}&spr={spr}&sig={sig}")
}

/// Flags alone (no AZURE_* environment) with an account key, then with a SAS;
/// the az://, abfss:// and https:// forms of one container all name the same
/// files.
#[test]
fn azure_settings_by_flags_key_or_sas_and_every_url_form() {
    let Some(azure) = Remote::azure() else { return };
    let prefix = unique("flags");
    rt().block_on(upload(azure.store().as_ref(), &sample(), &prefix));
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    materialize_ok(&sample(), &local, &["--quiet"]);

    let count = "SELECT count(*) AS n FROM id_graph";
    let local_count = crate::util::run_ok(&[
        "query",
        "--source",
        sample().to_str().unwrap(),
        "--dest",
        local.to_str().unwrap(),
        "--format",
        "csv",
        "-c",
        count,
    ]);
    let common = [
        "--azure-account",
        AZURE_ACCOUNT,
        "--azure-endpoint",
        &azure.endpoint,
        "--azure-allow-http",
    ];
    let sas = container_sas();
    let by_key = ["--azure-access-key", AZURE_KEY];
    let by_sas = ["--azure-sas", &sas];
    let source = azure.url(&prefix);
    let abfss = format!("abfss://{BUCKET}@{AZURE_ACCOUNT}.dfs.core.windows.net/{prefix}-views");
    let https = format!("https://{AZURE_ACCOUNT}.blob.core.windows.net/{BUCKET}/{prefix}-views");
    for (what, credential) in [("key", by_key), ("sas", by_sas)] {
        let mut args = vec![
            "materialize",
            "--source",
            &source,
            "--dest",
            &abfss,
            "--quiet",
        ];
        args.extend(common);
        args.extend(credential);
        let out = run_clean(&args);
        assert!(out.status.success(), "{what}: {}", stderr(&out));
        let published = rt().block_on(contents(&azure.location(&format!("{prefix}-views"))));
        let fetched = tmp.path().join(format!("fetched-{what}"));
        crate::util::write_tree(&published, &fetched);
        for view in ["id_graph", "external_id_mapping", "profile_traits"] {
            assert_eq!(
                read_rows(&fetched.join(view)),
                read_rows(&local.join(view)),
                "{what}: {view}"
            );
        }
        let mut args = vec![
            "query", "--source", &source, "--dest", &https, "--format", "csv", "-c", count,
        ];
        args.extend(common);
        args.extend(credential);
        let out = run_clean(&args);
        assert!(out.status.success(), "{what}: {}", stderr(&out));
        assert_eq!(out.stdout, local_count.stdout, "{what}");
    }
}

/// Bad settings and unreachable or missing things: exit code 2, one line naming
/// the setting or URL, nothing written.
#[test]
fn azure_errors_are_one_line_and_name_the_setting() {
    let Some(azure) = Remote::azure() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("v");
    let d = dest.to_str().unwrap().to_string();
    let wrong_key = "d3Jvbmcga2V5"; // base64, but not the account's key
    let missing = azure.url("no/such/prefix");
    let cases: Vec<(Vec<&str>, bool, &str)> = vec![
        // (arguments, with the test environment, expected in the message)
        (
            vec!["--source", "az://no-such-container/x"],
            true,
            "no-such-container",
        ),
        (vec!["--source", &missing], true, "no tables under"),
        (
            vec![
                "--source",
                "az://psync-test/x",
                "--azure-access-key",
                wrong_key,
            ],
            true,
            "az://psync-test/x",
        ),
        (
            vec![
                "--source",
                "az://psync-test/x",
                "--azure-access-key",
                "not base64!",
            ],
            true,
            "--azure-access-key",
        ),
        (
            vec![
                "--source",
                "az://psync-test/x",
                "--azure-account",
                AZURE_ACCOUNT,
                "--azure-sas",
                "sv=1&broken",
            ],
            false,
            "--azure-sas",
        ),
        (
            vec!["--source", "az://psync-test/x"],
            false,
            "no storage account",
        ),
        (
            vec!["--source", "az://Psync/x"],
            true,
            "'Psync' is not a valid container name",
        ),
        (
            vec![
                "--source",
                "az://psync-test/x",
                "--azure-endpoint",
                "http://127.0.0.1:9/devstoreaccount1",
                "--retries",
                "1",
            ],
            true,
            "127.0.0.1:9",
        ),
        (
            vec![
                "--source",
                "az://psync-test/x",
                "--azure-endpoint",
                "127.0.0.1:9",
            ],
            true,
            "--azure-endpoint",
        ),
    ];
    for (extra, with_env, needle) in cases {
        let mut args = vec!["materialize"];
        if !extra.contains(&"--dest") {
            args.extend(["--dest", &d]);
        }
        args.extend(extra);
        let out = if with_env {
            azure.run(&args)
        } else {
            run_clean(&args)
        };
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {err}"
        );
        assert!(!err.contains(AZURE_KEY), "{args:?}: the key is never shown");
        assert!(
            err.split("sig=")
                .skip(1)
                .all(|after| after.starts_with("REDACTED")),
            "{args:?}: nor a SAS signature: {err}"
        );
        assert!(!dest.exists(), "{args:?}: nothing written on error");
    }
}

/// A failing request's URL, which object_store's messages show, carries the SAS:
/// its signature is redacted, in the error and in log lines. (An account SAS,
/// which Azurite refuses for the Blob Batch that deletes go through.)
#[test]
fn a_sas_signature_never_shows_in_messages() {
    let Some(azure) = Remote::azure() else { return };
    let sas = account_sas();
    let to_azurite = [
        "--azure-account",
        AZURE_ACCOUNT,
        "--azure-endpoint",
        &azure.endpoint,
        "--azure-allow-http",
    ];
    let sample = sample();
    let refused_dest = azure.url(&unique("refused-sas"));
    let refused_sas: Vec<&str> = [
        "materialize",
        "--source",
        sample.to_str().unwrap(),
        "--dest",
        &refused_dest,
        "--azure-sas",
        &sas,
    ]
    .into_iter()
    .chain(to_azurite)
    .collect();
    let out = run_clean(&refused_sas);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("sig=REDACTED"), "{err}");
    assert!(
        err.split("sig=")
            .skip(1)
            .all(|after| after.starts_with("REDACTED")),
        "{err}"
    );
}

/// On the wire: a run takes its lease with a conditional create, renews and
/// releases it with conditional overwrites, and publishes every view with Put
/// Blob or Put Block List (whole-object commits), never Copy Blob, whose
/// destination may be visible before the copy completes.
#[test]
fn publishing_on_azure_commits_whole_blobs_and_never_copies() {
    let Some(azure) = Remote::azure() else { return };
    let prefix = unique("wire");
    let dst = azure.url(&prefix);
    // A first run, so that the second replaces published views.
    let out = azure.run(&[
        "materialize",
        "--source",
        sample().to_str().unwrap(),
        "--dest",
        &dst,
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let proxy = Proxy::start(&azure.authority(), |_| Verdict::Forward);
    let through = azure.endpoint_at(&proxy.url);
    let out = azure.run(&[
        "materialize",
        "--source",
        sample().to_str().unwrap(),
        "--dest",
        &dst,
        "--quiet",
        "--azure-endpoint",
        &through,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = proxy.seen();
    let path = |rel: &str| format!("/{AZURE_ACCOUNT}/{BUCKET}/{prefix}/{rel}");
    let copies: Vec<_> = seen
        .iter()
        .filter(|(r, _)| r.header("x-ms-copy-source").is_some())
        .map(|(r, _)| r.target.clone())
        .collect();
    assert_eq!(copies, Vec::<String>::new(), "no Copy Blob");
    let lock = path("_psync/lock");
    let puts_of = |target: &str| -> Vec<&crate::s3::Request> {
        seen.iter()
            .map(|(r, _)| r)
            .filter(|r| r.method == "PUT" && r.target.split('?').next() == Some(target))
            .collect()
    };
    let lock_puts = puts_of(&lock);
    assert!(
        lock_puts
            .first()
            .is_some_and(|r| r.header("if-none-match") == Some("*")),
        "the lease is taken with a conditional create: {lock_puts:?}"
    );
    assert!(
        lock_puts[1..]
            .iter()
            .all(|r| r.header("if-match").is_some())
            && lock_puts.len() > 1,
        "renewed with conditional overwrites: {lock_puts:?}"
    );
    for view in ["id_graph", "external_id_mapping", "profile_traits"] {
        let target = path(&format!("{view}/{view}.parquet"));
        let puts = puts_of(&target);
        // One Put Blob, or Put Blocks and their one Put Block List.
        let commits: Vec<_> = puts
            .iter()
            .filter(|r| !r.target.contains("comp=block&") && !r.target.ends_with("comp=block"))
            .collect();
        assert_eq!(commits.len(), 1, "{view}: one commit, in {puts:?}");
        assert!(
            commits[0].header("x-ms-blob-type") == Some("BlockBlob")
                || commits[0].target.contains("comp=blocklist"),
            "{view}: {:?}",
            commits[0]
        );
    }
    let store = azure.store();
    assert!(
        rt().block_on(store.head(&ObjPath::from(format!("{prefix}/_psync/lock"))))
            .is_err(),
        "the lease is released"
    );
}
