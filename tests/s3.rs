//! S3 through a real S3-compatible server (moto, started by `.ci/run`, see
//! [`crate::remote`]): the same views as on local disk, the storage operations
//! publishing relies on, the destination lock, and faults on the wire (a proxy in
//! front of the server answers chosen requests with S3's `503 Slow Down`, or
//! deletes a file between the listing and the reads). Without a server these tests
//! skip, except under CI, where they fail.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::ObjectStoreExt;
use object_store::path::Path as ObjPath;

use crate::remote::{BUCKET, Remote, conformance, rt, unique, upload};
use crate::util::{contents, materialize_ok, read_rows, run};

#[test]
fn s3_views_equal_local_views() {
    let Some(s3) = Remote::s3() else { return };
    crate::remote::views_equal_local_views(&s3);
}

#[test]
fn s3_errors_are_one_line() {
    let Some(s3) = Remote::s3() else { return };
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
        let out = s3.run(&refs);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{err}");
        assert!(!dest.exists(), "nothing written on error");
    }
}
#[test]
fn storage_conformance_local_and_s3() {
    let tmp = tempfile::tempdir().unwrap();
    let root = ObjPath::from_absolute_path(tmp.path()).unwrap();
    rt().block_on(conformance(
        &psync_lake_io::LocalStore::new(),
        root.as_ref(),
    ));
    let Some(s3) = Remote::s3() else { return };
    rt().block_on(conformance(s3.store().as_ref(), &unique("conformance")));
}

#[test]
fn a_held_lock_on_s3_stops_a_run() {
    let Some(s3) = Remote::s3() else { return };
    crate::remote::a_held_lock_stops_a_run(&s3);
}

#[test]
fn a_held_lock_stops_a_local_run_and_a_stale_one_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample");
    let dest = tmp.path().join("v");
    materialize_ok(&sample, &dest, &["--quiet"]);
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
    materialize_ok(&sample, &dest, &["--quiet", "--stale-lock-minutes", "0"]);
    assert!(!dest.join("_psync/lock").exists(), "the lock is released");
}

/// One request as the proxy received it.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// What a retry of this request repeats.
    fn key(&self) -> String {
        format!(
            "{} {} {}",
            self.method,
            self.target,
            self.header("range").unwrap_or("")
        )
    }

    /// The S3 operation.
    fn kind(&self) -> &'static str {
        let query = self.target.split_once('?').map_or("", |(_, q)| q);
        match self.method.as_str() {
            "GET" if query.contains("list-type=2") => "list",
            "GET" if self.header("range").is_some() => "range get",
            "GET" => "get",
            "HEAD" => "head",
            "PUT" if self.header("x-amz-copy-source").is_some() => "copy",
            "PUT" if self.header("if-none-match").is_some() => "create if absent",
            "PUT" => "put",
            "POST" if query.starts_with("delete") => "delete",
            "POST" => "post",
            "DELETE" => "delete",
            _ => "other",
        }
    }
}

/// What the proxy does with a request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Verdict {
    /// Pass it to the server.
    Forward,
    /// Answer `503 Slow Down` as S3 does when throttling.
    SlowDown,
}

type Rule = Box<dyn FnMut(&Request) -> Verdict + Send>;

/// A plain HTTP/1.1 proxy in front of the S3 server, one request per connection:
/// each request goes to `rule`, which may act (delete an object, say) and decides
/// whether the server or a `503 Slow Down` answers it. Everything it saw is kept.
pub(crate) struct Proxy {
    pub url: String,
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(Request, Verdict)>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: &str, rule: impl FnMut(&Request) -> Verdict + Send + 'static) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let rule: Arc<Mutex<Rule>> = Arc::new(Mutex::new(Box::new(rule)));
        let seen = Arc::new(Mutex::new(vec![]));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, halt) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let (upstream, rule, log) = (upstream.clone(), rule.clone(), log.clone());
                std::thread::spawn(move || {
                    if let Err(e) = serve(client, &upstream, &rule, &log) {
                        eprintln!("proxy: {e}");
                    }
                });
            }
        });
        Proxy {
            url: format!("http://{addr}"),
            addr,
            seen,
            stop,
        }
    }

    /// Every request so far, in arrival order, with what the proxy did.
    pub fn seen(&self) -> Vec<(Request, Verdict)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn bad(message: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.into())
}

/// Reads one request; returns it and its bytes as they go to the server (asking
/// it to close the connection after answering).
fn read_request(client: &mut TcpStream) -> std::io::Result<Option<(Request, Vec<u8>)>> {
    let mut buf = vec![];
    let mut chunk = [0u8; 64 * 1024];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return match buf.is_empty() {
                true => Ok(None),
                false => Err(bad("the client closed the connection mid-request")),
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|e| bad(e.to_string()))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next(), parts.next());
    let (Some(method), Some(target)) = (method, target) else {
        return Err(bad(format!("bad request line {request_line:?}")));
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let request = Request {
        method: method.to_string(),
        target: target.to_string(),
        headers,
    };
    if request.header("transfer-encoding").is_some() {
        return Err(bad("the proxy does not read chunked request bodies"));
    }
    let length: usize = match request.header("content-length") {
        Some(v) => v
            .parse()
            .map_err(|_| bad(format!("content-length {v:?}")))?,
        None => 0,
    };
    while buf.len() < head_end + length {
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Err(bad("the client closed the connection mid-body"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut out = close_after(&request_line, &request.headers);
    out.extend_from_slice(&buf[head_end..head_end + length]);
    Ok(Some((request, out)))
}

/// A message head with `Connection: close` in place of any connection header.
fn close_after(first_line: &str, headers: &[(String, String)]) -> Vec<u8> {
    let mut head = format!("{first_line}\r\n");
    for (n, v) in headers {
        if n != "connection" && n != "keep-alive" {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    head.push_str("connection: close\r\n\r\n");
    head.into_bytes()
}

fn serve(
    mut client: TcpStream,
    upstream: &str,
    rule: &Mutex<Rule>,
    log: &Mutex<Vec<(Request, Verdict)>>,
) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let Some((request, raw)) = read_request(&mut client)? else {
        return Ok(());
    };
    let verdict = (rule.lock().unwrap())(&request);
    log.lock().unwrap().push((request, verdict));
    let response = match verdict {
        Verdict::SlowDown => {
            // As S3 sends it, newline after the XML declaration included.
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                        <Message>Please reduce your request rate.</Message>\
                        <RequestId>PSYNCPROXY</RequestId></Error>";
            format!(
                "HTTP/1.1 503 Slow Down\r\ncontent-type: application/xml\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        }
        Verdict::Forward => {
            let mut server = TcpStream::connect(upstream)?;
            server.set_read_timeout(Some(Duration::from_secs(30)))?;
            server.write_all(&raw)?;
            let mut response = vec![];
            server.read_to_end(&mut response)?;
            let end = find(&response, b"\r\n\r\n").ok_or_else(|| bad("no response head"))? + 4;
            let head = std::str::from_utf8(&response[..end]).map_err(|e| bad(e.to_string()))?;
            let mut lines = head.split("\r\n");
            let status = lines.next().unwrap_or_default().to_string();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let mut out = close_after(&status, &headers);
            out.extend_from_slice(&response[end..]);
            out
        }
    };
    client.write_all(&response)?;
    client.flush()
}

/// A rule that answers `503 Slow Down` the first time it sees a distinct request
/// matching `filter`, so that a retry of it goes through: every such request when
/// `every` is 1, else the first one of each kind and every `every`-th other
/// (each 503 costs a run a backoff).
fn slow_down_once(
    every: usize,
    filter: impl Fn(&Request) -> bool + Send + 'static,
) -> impl FnMut(&Request) -> Verdict + Send {
    let mut seen = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    move |r: &Request| {
        if !filter(r) || !seen.insert(r.key()) {
            return Verdict::Forward;
        }
        if kinds.insert(r.kind()) || seen.len() % every == 0 {
            Verdict::SlowDown
        } else {
            Verdict::Forward
        }
    }
}

#[test]
fn transient_s3_errors_are_retried_and_without_retries_fail_cleanly() {
    let Some(s3) = Remote::s3() else { return };
    let store = s3.store();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample");
    let prefix = unique("flaky");
    rt().block_on(upload(store.as_ref(), &sample, &prefix));
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    materialize_ok(&sample, &local, &["--quiet"]);
    let src = format!("s3://{BUCKET}/{prefix}");
    let dst = format!("s3://{BUCKET}/{prefix}-views");
    let through = |proxy: &Proxy, retries: Option<&str>| {
        let mut args = vec![
            "materialize",
            "--source",
            &src,
            "--dest",
            &dst,
            "--quiet",
            "--s3-endpoint",
            &proxy.url,
        ];
        args.extend(retries.map(|r| ["--retries", r]).into_iter().flatten());
        s3.run(&args)
    };

    // With the default retries: the first request of each kind, and every
    // fourth distinct request, is answered 503 the first time.
    let proxy = Proxy::start(&s3.authority(), slow_down_once(4, |_| true));
    let out = through(&proxy, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = proxy.seen();
    let mut retried = BTreeSet::new();
    for (i, (r, verdict)) in seen.iter().enumerate() {
        if *verdict == Verdict::SlowDown {
            assert!(
                seen[i + 1..]
                    .iter()
                    .any(|(later, v)| *v == Verdict::Forward && later.key() == r.key()),
                "{} was not retried",
                r.key()
            );
            retried.insert(r.kind());
        }
    }
    for kind in [
        "list",
        "range get",
        "create if absent",
        "put",
        "copy",
        "delete",
    ] {
        assert!(retried.contains(kind), "no {kind} was retried: {retried:?}");
    }
    let published = rt().block_on(contents(&s3.location(&format!("{prefix}-views"))));
    let fetched = tmp.path().join("fetched");
    crate::util::write_tree(&published, &fetched);
    for view in ["id_graph", "external_id_mapping", "profile_traits"] {
        assert_eq!(
            read_rows(&fetched.join(view)),
            read_rows(&local.join(view)),
            "{view}"
        );
    }
    drop(proxy);

    // Without retries the first 503 ends the run, whether it hits the listing of
    // the lake or the commit's first rename (a copy).
    for (what, proxy, needle) in [
        (
            "listing",
            Proxy::start(&s3.authority(), slow_down_once(1, |_| true)),
            src.clone(),
        ),
        (
            "commit",
            Proxy::start(&s3.authority(), slow_down_once(1, |r| r.kind() == "copy")),
            format!("cannot write {dst}/"),
        ),
    ] {
        let out = through(&proxy, Some("0"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert_eq!(err.lines().count(), 1, "{what}: {err}");
        assert!(
            err.contains(&needle) && err.contains("503"),
            "{what}: {err}"
        );
        let slowed: Vec<_> = proxy
            .seen()
            .into_iter()
            .filter(|(_, v)| *v == Verdict::SlowDown)
            .collect();
        assert_eq!(slowed.len(), 1, "{what}: one 503, never retried");
        assert!(
            !proxy
                .seen()
                .iter()
                .any(|(r, v)| *v == Verdict::Forward && r.key() == slowed[0].0.key()),
            "{what}: not retried"
        );
        assert_eq!(
            rt().block_on(contents(&s3.location(&format!("{prefix}-views")))),
            published,
            "{what}: the destination is as the last run left it"
        );
    }
}

#[test]
fn a_file_deleted_between_listing_and_reading_on_s3_is_named() {
    let Some(s3) = Remote::s3() else { return };
    let store = s3.store();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample");
    let prefix = unique("vanish");
    rt().block_on(upload(store.as_ref(), &sample, &prefix));
    let src = format!("s3://{BUCKET}/{prefix}");
    let dst = format!("s3://{BUCKET}/{prefix}-views");
    let args = ["materialize", "--source", &src, "--dest", &dst, "--quiet"];
    let out = s3.run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let published = rt().block_on(contents(&s3.location(&format!("{prefix}-views"))));

    // The first read of the file after the lake was listed finds it deleted.
    let victim = format!("{prefix}/profile_traits_updates/day=2024-01-01/part-00002.parquet");
    let (listed, deleted) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (l, d, v, s) = (
        listed.clone(),
        deleted.clone(),
        victim.clone(),
        store.clone(),
    );
    let deleter = rt();
    let lake_path = format!("/{BUCKET}/{prefix}/profile_traits_updates/");
    let proxy = Proxy::start(&s3.authority(), move |r| {
        if r.kind() == "list" {
            l.store(true, Ordering::SeqCst);
        } else if l.load(Ordering::SeqCst)
            && r.method == "GET"
            && r.target.starts_with(&lake_path)
            && r.target.contains("part-00002.parquet")
            && !d.swap(true, Ordering::SeqCst)
        {
            deleter
                .block_on(s.delete(&ObjPath::from(v.as_str())))
                .unwrap();
        }
        Verdict::Forward
    });
    let mut args = args.to_vec();
    args.extend(["--s3-endpoint", &proxy.url]);
    let out = s3.run(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        deleted.load(Ordering::SeqCst),
        "the run read the file: {err}"
    );
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("s3://{BUCKET}/{victim}")), "{err}");
    assert!(err.contains("vanished after the lake was listed"), "{err}");
    assert!(!err.contains("panic"), "{err}");
    assert_eq!(
        rt().block_on(contents(&s3.location(&format!("{prefix}-views")))),
        published,
        "the destination is as the last run left it"
    );
}
