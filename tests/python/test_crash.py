"""Crash safety (SPEC §4): SIGKILL a `materialize` at random moments of its run;
after every kill each view folder, opened by path in DuckDB (local) or pyarrow (S3,
Azure),
holds exactly the previous run's view or the new run's, never a mix; and the next
run succeeds and equals a full run."""

import os
import pathlib
import random
import shutil
import signal
import subprocess
import time

import duckdb
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from test_readers import ROOT, VIEWS, binary

KILLS_LOCAL = 12
KILLS_S3 = 10
KILLS_AZURE = 10

# Azurite's account and its well-known key (public: every emulator has it).
AZURE_ACCOUNT = "devstoreaccount1"
AZURE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def run(args, env=None):
    subprocess.run([binary(), *args], check=True, env=env, capture_output=True)


def killed_run(args, delay, env=None):
    p = subprocess.Popen([binary(), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    p.wait()


def rows_duckdb(folder):
    files = list(pathlib.Path(folder).glob("*.parquet"))
    if not files:
        return None
    t = duckdb.sql(f"SELECT * FROM '{folder}/*.parquet'").arrow()
    if not hasattr(t, "to_pylist"):
        t = t.read_all()
    return sorted((tuple(r.values()) for r in t.to_pylist()), key=repr)


@pytest.fixture(scope="module")
def lakes(tmp_path_factory):
    """Two lakes whose views differ in every view, and each one's full-run views."""
    base = tmp_path_factory.mktemp("crash")
    out = {}
    for name, profiles in (("a", 3000), ("b", 4000)):
        lake = base / f"lake_{name}"
        run(["generate", "--dest", str(lake), "--profiles", str(profiles), "--traits", "12", "--seed", "5",
             "--rows-per-file", "2000"])
        views = base / f"views_{name}"
        run(["materialize", "--source", str(lake), "--dest", str(views), "--quiet"])
        out[name] = (lake, {v: rows_duckdb(views / v) for v in VIEWS})
    return out


def test_sigkill_local(lakes, tmp_path):
    dest = tmp_path / "dest"
    run(["materialize", "--source", str(lakes["a"][0]), "--dest", str(dest), "--quiet"])
    rng = random.Random(7)
    current = "a"
    for i in range(KILLS_LOCAL):
        target = "b" if current == "a" else "a"
        killed_run(["materialize", "--source", str(lakes[target][0]), "--dest", str(dest), "--quiet"], rng.uniform(0.05, 1.2))
        for v in VIEWS:
            seen = rows_duckdb(dest / v)
            assert seen in (lakes["a"][1][v], lakes["b"][1][v]), f"kill {i}: {v} is neither whole view"
        # The next run, at once and with default settings, takes over the killed run's
        # lease (its process is gone) and completes the set.
        run(["materialize", "--source", str(lakes[target][0]), "--dest", str(dest), "--quiet"])
        for v in VIEWS:
            assert rows_duckdb(dest / v) == lakes[target][1][v]
        current = target


def s3_env():
    endpoint = os.environ.get("PSYNC_S3_ENDPOINT")
    if not endpoint:
        if os.environ.get("CI"):
            pytest.fail("CI is set but PSYNC_S3_ENDPOINT is not")
        pytest.skip("no S3 server")
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_REGION="us-east-1", AWS_ALLOW_HTTP="true")
    fs = pafs.S3FileSystem(endpoint_override=endpoint, access_key="test", secret_key="test", region="us-east-1",
                           scheme="http")
    return env, fs


def rows_s3(fs, prefix):
    infos = [i for i in fs.get_file_info(pafs.FileSelector(prefix, allow_not_found=True)) if i.path.endswith(".parquet")]
    if not infos:
        return None
    tables = [pq.read_table(i.path, filesystem=fs) for i in infos]
    rows = [tuple(r.values()) for t in tables for r in t.to_pylist()]
    return sorted(rows, key=repr)


def azure_env():
    """The binary's environment for Azurite (`.ci/run` starts it; the account's Blob
    endpoint in PSYNC_AZURE_ENDPOINT) and a pyarrow file system on it."""
    endpoint = os.environ.get("PSYNC_AZURE_ENDPOINT")
    if not endpoint:
        if os.environ.get("CI"):
            pytest.fail("CI is set but PSYNC_AZURE_ENDPOINT is not")
        pytest.skip("no Azurite")
    env = dict(os.environ, AZURE_STORAGE_ACCOUNT_NAME=AZURE_ACCOUNT, AZURE_STORAGE_ACCOUNT_KEY=AZURE_KEY,
               AZURE_STORAGE_ENDPOINT=endpoint, AZURE_ALLOW_HTTP="true")
    scheme, rest = endpoint.split("://", 1)
    authority = rest.split("/")[0]
    # Azurite serves Blob only: the Data Lake endpoint pyarrow probes for a
    # hierarchical namespace is pointed at it too (and finds none).
    fs = pafs.AzureFileSystem(AZURE_ACCOUNT, account_key=AZURE_KEY, blob_storage_authority=authority,
                              blob_storage_scheme=scheme, dfs_storage_authority=authority, dfs_storage_scheme=scheme)
    return env, fs


def sigkill_remote(lakes, env, fs, scheme, prefix, kills):
    """SIGKILLs runs publishing into `scheme://prefix` (`prefix` starts with the bucket
    or container); every view, read by pyarrow, is one run's whole view."""
    dest = f"{scheme}://{prefix}"
    run(["materialize", "--source", str(lakes["a"][0]), "--dest", dest, "--quiet"], env=env)
    # Expected rows as pyarrow renders them.
    expected = {}
    for name in ("a", "b"):
        d = f"{scheme}://{prefix}-expect-{name}"
        run(["materialize", "--source", str(lakes[name][0]), "--dest", d, "--quiet"], env=env)
        expected[name] = {v: rows_s3(fs, f"{prefix}-expect-{name}/{v}") for v in VIEWS}
    rng = random.Random(11)
    current = "a"
    for i in range(kills):
        target = "b" if current == "a" else "a"
        killed_run(["materialize", "--source", str(lakes[target][0]), "--dest", dest, "--quiet"], rng.uniform(0.05, 1.5), env=env)
        for v in VIEWS:
            seen = rows_s3(fs, f"{prefix}/{v}")
            assert seen in (expected["a"][v], expected["b"][v]), f"kill {i}: {v} is neither whole view"
        run(["materialize", "--source", str(lakes[target][0]), "--dest", dest, "--quiet"], env=env)
        for v in VIEWS:
            assert rows_s3(fs, f"{prefix}/{v}") == expected[target][v]
        current = target


def test_sigkill_s3(lakes):
    env, fs = s3_env()
    sigkill_remote(lakes, env, fs, "s3", f"psync-test/crash-{os.getpid()}-{time.time_ns()}", KILLS_S3)


def test_sigkill_azure(lakes):
    env, fs = azure_env()
    sigkill_remote(lakes, env, fs, "az", f"psync-test/crash-{os.getpid()}-{time.time_ns()}", KILLS_AZURE)


# Per landed batch, when in the run (as a share of an uninterrupted run's time) to kill it:
# most of a run is computing, the commits (views, then state, then manifest) come last.
KILL_SHARES = [(0.05, 0.6), (0.6, 0.9), (0.85, 1.0), (0.95, 1.1)]


def test_sigkill_incremental(tmp_path):
    """Batches land one after another; each incremental run is SIGKILLed at random
    moments several times (each kill leaves every view whole, the previous batch's or
    the new one's), then run to the end: the views equal a full run's and verify
    finds nothing."""
    generated = tmp_path / "generated"
    run(["generate", "--dest", str(generated), "--profiles", "4000", "--traits", "12", "--seed", "9",
         "--rows-per-file", "1000"])
    files = sorted(p.relative_to(generated) for p in generated.rglob("*.parquet"))
    rng = random.Random(13)
    rng.shuffle(files)
    batches = [files[i::4] for i in range(4)]
    lake, dest = tmp_path / "lake", tmp_path / "dest"

    def land(batch):
        for rel in batch:
            (lake / rel).parent.mkdir(parents=True, exist_ok=True)
            (lake / rel).write_bytes((generated / rel).read_bytes())

    def full_views(name):
        d = tmp_path / f"full-{name}"
        run(["materialize", "--source", str(lake), "--dest", str(d), "--quiet"])
        return {v: rows_duckdb(d / v) for v in VIEWS}

    def incremental(d):
        return ["materialize", "--source", str(lake), "--dest", str(d), "--mode", "incremental", "--quiet"]

    land(batches[0])
    run(incremental(dest))
    previous = full_views(0)
    kills = 0
    for b, batch in enumerate(batches[1:], start=1):
        land(batch)
        expected = full_views(b)
        assert expected != previous
        # How long this batch's incremental run takes, on a copy of the destination.
        probe = tmp_path / f"probe-{b}"
        shutil.copytree(dest, probe)
        started = time.monotonic()
        run(incremental(probe))
        seconds = time.monotonic() - started
        for i, (low, high) in enumerate(KILL_SHARES):
            p = subprocess.Popen([binary(), *incremental(dest)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(low, high) * seconds)
            p.send_signal(signal.SIGKILL)
            kills += p.wait() == -signal.SIGKILL
            for v in VIEWS:
                assert rows_duckdb(dest / v) in (previous[v], expected[v]), f"batch {b}, kill {i}: {v} is not whole"
        run(incremental(dest))
        for v in VIEWS:
            assert rows_duckdb(dest / v) == expected[v], f"batch {b}: {v} differs from a full run"
        check = subprocess.run([binary(), "verify", "--source", str(lake), "--dest", str(dest)], capture_output=True,
                               text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        previous = expected
    # Kills after a run ended test nothing: enough of them must hit a running run.
    assert kills >= len(batches), f"only {kills} kills hit a running run"
