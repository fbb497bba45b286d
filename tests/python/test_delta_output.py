"""Delta output (issue 14 point 4, `materialize --format delta`): every view is a Delta
table that the Python `deltalake` package and Polars read as exactly the Parquet
output's rows; each run commits one version per view, `_psync/views.json` names the
versions of one consistent snapshot (time travel to them gives one run's views); a
run SIGKILLed at any moment leaves every view readable at a whole version. DuckDB's
`delta` extension is tried too (it needs a download: skipped when offline)."""

import json
import pathlib
import os
import random
import signal
import subprocess
import time

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from test_readers import ROOT, VIEWS, binary

KILLS = 16
KILLS_REMOTE = 8
# When in a run (as a share of an uninterrupted run's time) to kill it: the commits,
# one per view, come in its last tenth or so.
KILL_SHARES = [(0.1, 0.8), (0.8, 0.95), (0.85, 1.0), (0.9, 1.05)]


def run(*args):
    p = subprocess.run([binary(), *map(str, args)], capture_output=True, text=True)
    assert p.returncode == 0, f"psync-lake {' '.join(map(str, args))} failed:\n{p.stderr}"
    return p


def materialize(source, dest, *extra):
    return run("materialize", "--source", source, "--dest", dest, "--quiet", *extra)


def rows(t: pa.Table):
    """The rows of `t`, columns in name order, sorted: equal for equal views."""
    t = t.select(sorted(t.column_names))
    return sorted((tuple(r.values()) for r in t.to_pylist()), key=repr)


def parquet_views(dest):
    return {v: rows(pq.read_table(dest / v)) for v in VIEWS}


def delta_views(dest, versions=None, options=None):
    """Every view under `dest` (a folder or a URL) read by `deltalake` (at
    `versions[view]` when given)."""
    out = {}
    for v in VIEWS:
        version = None if versions is None else versions[v]
        t = DeltaTable(f"{dest}/{v}", version=version, storage_options=options)
        out[v] = rows(t.to_pyarrow_table())
    return out


def named_versions(dest, fs=None):
    """The versions `_psync/views.json` names (`fs`: the remote file system of `dest`,
    then a bucket-or-container path)."""
    if fs is None:
        text = (pathlib.Path(dest) / "_psync" / "views.json").read_text()
    else:
        with fs.open_input_stream(f"{dest}/_psync/views.json") as f:
            text = f.read().decode()
    names = json.loads(text)
    return {v: names["views"][v]["version"] for v in VIEWS}


@pytest.fixture(scope="module")
def lakes(tmp_path_factory):
    """Two lakes whose views differ in every view, and each one's Parquet views."""
    base = tmp_path_factory.mktemp("delta_out")
    out = {}
    for name, profiles in (("a", 3000), ("b", 4000)):
        lake = base / f"lake_{name}"
        run("generate", "--dest", lake, "--profiles", profiles, "--traits", "12", "--seed", "5",
            "--rows-per-file", "2000")
        views = base / f"views_{name}"
        materialize(lake, views)
        out[name] = (lake, parquet_views(views))
    assert all(out["a"][1][v] != out["b"][1][v] for v in VIEWS)
    return out


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The sample lake published as Parquet and as Delta."""
    base = tmp_path_factory.mktemp("delta_sample")
    materialize(ROOT / "data" / "sample", base / "parquet")
    materialize(ROOT / "data" / "sample", base / "delta", "--format", "delta")
    return base / "parquet", base / "delta"


def test_deltalake_reads_every_view_as_the_parquet_output(sample):
    parquet, delta = sample
    expected = parquet_views(parquet)
    assert all(expected[v] for v in VIEWS)
    assert delta_views(delta) == expected
    for v in VIEWS:
        dt = DeltaTable(str(delta / v))
        assert dt.version() == 0
        assert len(dt.file_uris()) == 1
    # The Personas views are tables too.
    for table in (delta / "personas_default").iterdir():
        assert rows(DeltaTable(str(table)).to_pyarrow_table()) == rows(
            pq.read_table(parquet / "personas_default" / table.name))


def test_polars_reads_every_view_as_the_parquet_output(sample):
    parquet, delta = sample
    for v in VIEWS:
        ours = pl.read_delta(str(delta / v))
        theirs = pl.read_parquet(str(parquet / v / f"{v}.parquet"))
        assert ours.height == theirs.height > 0
        assert rows(ours.to_arrow()) == rows(theirs.to_arrow()), v
        lazy = pl.scan_delta(str(delta / v)).collect()
        assert lazy.height == theirs.height


def test_duckdb_delta_scan(sample):
    parquet, delta = sample
    con = duckdb.connect()
    try:
        con.sql("INSTALL delta")
        con.sql("LOAD delta")
    except duckdb.Error as e:
        pytest.skip(f"DuckDB's delta extension cannot be installed here (offline?): {e}")
    for v in VIEWS:
        t = con.sql(f"SELECT * FROM delta_scan('{delta / v}')").arrow()
        if not hasattr(t, "to_pylist"):
            t = t.read_all()
        assert rows(t) == parquet_views(parquet)[v], v


def test_versions_time_travel_to_each_runs_views(lakes, tmp_path):
    dest = tmp_path / "dest"
    materialize(lakes["a"][0], dest, "--format", "delta")
    assert named_versions(dest) == {v: 0 for v in VIEWS}
    materialize(lakes["b"][0], dest, "--format", "delta")
    versions = named_versions(dest)
    assert versions == {v: 1 for v in VIEWS}
    record = json.loads((dest / "_psync" / "last_run.json").read_text())
    assert {r["view"]: r["delta_version"] for r in record["views"] if r["view"] in VIEWS} == versions
    assert delta_views(dest) == lakes["b"][1]
    assert delta_views(dest, versions) == lakes["b"][1]
    assert delta_views(dest, {v: 0 for v in VIEWS}) == lakes["a"][1]
    for v in VIEWS:
        old = pl.read_delta(str(dest / v), version=0)
        assert rows(old.to_arrow()) == lakes["a"][1][v]
    # An incremental run over a Delta destination rewrites every view as a new version.
    materialize(lakes["a"][0], dest, "--format", "delta", "--mode", "incremental")
    assert named_versions(dest) == {v: 2 for v in VIEWS}
    assert delta_views(dest) == lakes["a"][1]


def sigkill_delta(lakes, tmp_path, dest, kills, env=None, fs=None, options=None):
    """SIGKILLs runs publishing Delta output into `dest` at random moments of their
    run (shares of an uninterrupted run's time, most late: the commits come last):
    after each kill the latest version of every view is one run's whole view, and the
    versions views.json names are one run's views, all of them; the next run
    completes the set. `fs` and `options` read a remote `dest` (`scheme://path`)."""
    where = dest.split("://", 1)[1] if fs is not None else dest

    def go(lake, target=dest):
        subprocess.run([binary(), "materialize", "--source", str(lake), "--dest", str(target), "--quiet",
                        "--format", "delta"], check=True, env=env, capture_output=True)

    go(lakes["a"][0])
    started = time.monotonic()
    go(lakes["b"][0], target=f"{dest}-probe")
    seconds = time.monotonic() - started
    rng = random.Random(17)
    current, hits, mixed = "a", 0, 0
    for i in range(kills):
        target = "b" if current == "a" else "a"
        args = ["materialize", "--source", lakes[target][0], "--dest", dest, "--quiet", "--format", "delta"]
        p = subprocess.Popen([binary(), *map(str, args)], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        low, high = KILL_SHARES[i % len(KILL_SHARES)]
        time.sleep(rng.uniform(low, high) * seconds)
        p.send_signal(signal.SIGKILL)
        hits += p.wait() == -signal.SIGKILL
        latest = delta_views(dest, options=options)
        for v in VIEWS:
            assert latest[v] in (lakes["a"][1][v], lakes["b"][1][v]), f"kill {i}: {v} is neither whole view"
        mixed += latest not in (lakes["a"][1], lakes["b"][1])
        named = delta_views(dest, named_versions(where, fs), options)
        assert named in (lakes["a"][1], lakes["b"][1]), f"kill {i}: views.json names a mixed set"
        go(lakes[target][0])
        assert delta_views(dest, options=options) == lakes[target][1]
        assert delta_views(dest, named_versions(where, fs), options) == lakes[target][1]
        current = target
    # Kills after a run ended test nothing: enough of them must hit a running run.
    assert hits >= kills // 2, f"only {hits} of {kills} kills hit a running run"
    print(f"{hits} kills hit a running run; {mixed} left the latest versions from two runs")


def test_sigkill_leaves_every_view_at_a_whole_version(lakes, tmp_path):
    sigkill_delta(lakes, tmp_path, str(tmp_path / "dest"), KILLS)


def test_sigkill_s3(lakes, tmp_path):
    from test_crash import s3_env

    env, fs = s3_env()
    options = {"AWS_ENDPOINT_URL": env["AWS_ENDPOINT_URL"], "AWS_ACCESS_KEY_ID": "test",
               "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}
    dest = f"s3://psync-test/delta-kill-{os.getpid()}-{time.time_ns()}"
    sigkill_delta(lakes, tmp_path, dest, KILLS_REMOTE, env, fs, options)


def test_sigkill_azure(lakes, tmp_path):
    from test_crash import AZURE_ACCOUNT, AZURE_KEY, azure_env

    env, fs = azure_env()
    options = {"account_name": AZURE_ACCOUNT, "account_key": AZURE_KEY,
               "endpoint": env["AZURE_STORAGE_ENDPOINT"], "allow_http": "true"}
    dest = f"az://psync-test/delta-kill-{os.getpid()}-{time.time_ns()}"
    sigkill_delta(lakes, tmp_path, dest, KILLS_REMOTE, env, fs, options)


def test_s3_delta_output_read_by_deltalake(sample, tmp_path):
    """Delta output on S3 (the S3 server `.ci/run` starts): two runs, versions 0 and
    1, read by `deltalake` over S3 as the Parquet output."""
    from test_crash import s3_env

    env, _ = s3_env()
    prefix = f"psync-test/delta-out-{os.getpid()}-{time.time_ns()}"
    args = ["materialize", "--source", str(ROOT / "data" / "sample"), "--dest", f"s3://{prefix}", "--quiet",
            "--format", "delta"]
    for _ in range(2):
        subprocess.run([binary(), *args], check=True, env=env, capture_output=True)
    options = {"AWS_ENDPOINT_URL": env["AWS_ENDPOINT_URL"], "AWS_ACCESS_KEY_ID": "test",
               "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}
    parquet, _ = sample
    expected = parquet_views(parquet)
    for v in VIEWS:
        dt = DeltaTable(f"s3://{prefix}/{v}", storage_options=options)
        assert dt.version() == 1
        assert rows(dt.to_pyarrow_table()) == expected[v], v
        old = DeltaTable(f"s3://{prefix}/{v}", version=0, storage_options=options)
        assert rows(old.to_pyarrow_table()) == expected[v], v


def test_a_new_version_adds_columns_and_refuses_to_drop_them(tmp_path):
    """A lake with more traits adds columns to profile_traits in the next version (read
    right by deltalake and Polars, the old version keeps its schema); going back to
    fewer traits would drop columns: refused in one line, exit 2, nothing committed."""
    lakes = {}
    for traits in (8, 12):
        lake = tmp_path / f"lake_{traits}"
        run("generate", "--dest", lake, "--profiles", 500, "--traits", traits, "--seed", 3)
        materialize(lake, tmp_path / f"parquet_{traits}")
        lakes[traits] = (lake, parquet_views(tmp_path / f"parquet_{traits}"))
    dest = tmp_path / "dest"
    materialize(lakes[8][0], dest, "--format", "delta")
    materialize(lakes[12][0], dest, "--format", "delta")
    assert delta_views(dest) == lakes[12][1]
    assert rows(pl.read_delta(str(dest / "profile_traits")).to_arrow()) == lakes[12][1]["profile_traits"]
    old = DeltaTable(str(dest / "profile_traits"), version=0).to_pyarrow_table()
    assert rows(old) == lakes[8][1]["profile_traits"]
    before = named_versions(dest)
    p = subprocess.run([binary(), "materialize", "--source", str(lakes[8][0]), "--dest", str(dest), "--quiet",
                        "--format", "delta"], capture_output=True, text=True)
    assert p.returncode == 2, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "profile_traits" in p.stderr and "is not in the new view" in p.stderr, p.stderr
    assert named_versions(dest) == before
    assert all(DeltaTable(str(dest / v)).version() == before[v] for v in VIEWS)
    assert delta_views(dest) == lakes[12][1]


def test_readers_read_through_the_checkpoint(sample, tmp_path):
    """Eleven runs: version 10 comes with a checkpoint (every tenth does), which
    deltalake and Polars read through; time travel to an older version still works."""
    parquet, _ = sample
    expected = parquet_views(parquet)
    dest = tmp_path / "dest"
    for _ in range(11):
        materialize(ROOT / "data" / "sample", dest, "--format", "delta", "--no-health")
    assert (dest / "id_graph" / "_delta_log" / "00000000000000000010.checkpoint.parquet").exists()
    assert named_versions(dest) == {v: 10 for v in VIEWS}
    assert delta_views(dest) == expected
    assert delta_views(dest, {v: 3 for v in VIEWS}) == expected
    for v in VIEWS:
        assert DeltaTable(str(dest / v)).version() == 10
        assert rows(pl.read_delta(str(dest / v)).to_arrow()) == expected[v]
        assert len(DeltaTable(str(dest / v)).file_uris()) == 1


def test_azure_delta_output_read_by_deltalake(sample):
    """Delta output on Azure (Azurite, which `.ci/run` starts): two runs, versions 0
    and 1, read by `deltalake` over Azure as the Parquet output."""
    from test_crash import AZURE_ACCOUNT, AZURE_KEY, azure_env

    env, _ = azure_env()
    prefix = f"psync-test/delta-out-{os.getpid()}-{time.time_ns()}"
    args = ["materialize", "--source", str(ROOT / "data" / "sample"), "--dest", f"az://{prefix}", "--quiet",
            "--format", "delta"]
    for _ in range(2):
        subprocess.run([binary(), *args], check=True, env=env, capture_output=True)
    options = {"account_name": AZURE_ACCOUNT, "account_key": AZURE_KEY,
               "endpoint": env["AZURE_STORAGE_ENDPOINT"], "allow_http": "true"}
    parquet, _ = sample
    expected = parquet_views(parquet)
    for v in VIEWS:
        dt = DeltaTable(f"az://{prefix}/{v}", storage_options=options)
        assert dt.version() == 1
        assert rows(dt.to_pyarrow_table()) == expected[v], v
        old = DeltaTable(f"az://{prefix}/{v}", version=0, storage_options=options)
        assert rows(old.to_pyarrow_table()) == expected[v], v
