"""Crash safety (SPEC §4): SIGKILL a `materialize` at random moments of its run;
after every kill each view folder, opened by path in DuckDB (local) or pyarrow (S3),
holds exactly the previous run's view or the new run's, never a mix; and the next
run succeeds and equals a full run."""

import os
import pathlib
import random
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
        killed_run(["materialize", "--source", str(lakes[target][0]), "--dest", str(dest), "--quiet",
                    "--stale-lock-minutes", "0"], rng.uniform(0.05, 1.2))
        for v in VIEWS:
            seen = rows_duckdb(dest / v)
            assert seen in (lakes["a"][1][v], lakes["b"][1][v]), f"kill {i}: {v} is neither whole view"
        # The next run (the killed run's lock is stale at once here) completes the set.
        run(["materialize", "--source", str(lakes[target][0]), "--dest", str(dest), "--quiet",
             "--stale-lock-minutes", "0"])
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


def test_sigkill_s3(lakes):
    env, fs = s3_env()
    prefix = f"psync-test/crash-{os.getpid()}-{time.time_ns()}"
    dest = f"s3://{prefix}"
    run(["materialize", "--source", str(lakes["a"][0]), "--dest", dest, "--quiet"], env=env)
    # Expected rows as pyarrow renders them.
    expected = {}
    for name in ("a", "b"):
        d = f"s3://{prefix}-expect-{name}"
        run(["materialize", "--source", str(lakes[name][0]), "--dest", d, "--quiet"], env=env)
        expected[name] = {v: rows_s3(fs, f"{prefix}-expect-{name}/{v}") for v in VIEWS}
    rng = random.Random(11)
    current = "a"
    for i in range(KILLS_S3):
        target = "b" if current == "a" else "a"
        killed_run(["materialize", "--source", str(lakes[target][0]), "--dest", dest, "--quiet",
                    "--stale-lock-minutes", "0"], rng.uniform(0.05, 1.5), env=env)
        for v in VIEWS:
            seen = rows_s3(fs, f"{prefix}/{v}")
            assert seen in (expected["a"][v], expected["b"][v]), f"kill {i}: {v} is neither whole view"
        run(["materialize", "--source", str(lakes[target][0]), "--dest", dest, "--quiet",
             "--stale-lock-minutes", "0"], env=env)
        for v in VIEWS:
            assert rows_s3(fs, f"{prefix}/{v}") == expected[target][v]
        current = target
