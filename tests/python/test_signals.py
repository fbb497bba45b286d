"""Clean stops (SPEC §4): SIGTERM and SIGINT at random moments of full and incremental
runs, local, on S3 and on Azure. Each stopped run exits 143 (SIGTERM) or 130 (SIGINT) with one
line on stderr naming what it published, leaves no lock and nothing staged, and every
view, opened by path, is whole: the new run's where the line says it was published,
the previous run's otherwise."""

import pathlib
import random
import re
import shutil
import signal
import subprocess
import time

import pytest

from test_crash import azure_env, lakes, rows_duckdb, rows_s3, run, s3_env  # noqa: F401 (lakes is a fixture)
from test_readers import VIEWS, binary

SIGNALS_LOCAL = 10
SIGNALS_S3 = 6
SIGNALS_AZURE = 6
CODES = {signal.SIGTERM: 143, signal.SIGINT: 130}
LINE = re.compile(r"^interrupted by (SIGTERM|SIGINT): (nothing published|views (.+?) published(, .+ left as the previous run's)?)$")


def signalled(args, delay, sig, env=None, again=False):
    """Runs psync-lake, sends `sig` after `delay` seconds (twice if `again`); returns
    (exit code, stderr lines)."""
    p = subprocess.Popen([binary(), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    p.send_signal(sig)
    if again:
        time.sleep(0.05)
        if p.poll() is None:
            p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    return p.returncode, [line for line in err.splitlines() if line.strip()]


def seconds_of(args, env=None):
    """Wall time of one uninterrupted run (on a throwaway destination where the
    caller passes one), so that signals can land inside a run."""
    started = time.monotonic()
    run(args, env=env)
    return time.monotonic() - started


def moment(rng, seconds):
    """A random moment inside a run of `seconds`, after its signal handlers are up."""
    return max(0.03, rng.uniform(0.05, 0.95) * seconds)


def published_views(line):
    m = LINE.match(line)
    assert m, f"not the one line of a stopped run: {line!r}"
    return set() if m.group(2) == "nothing published" else set(m.group(3).split(", "))


def check_stopped(code, lines, sig):
    """Asserts the exit code and the line of a stopped run; returns the views it published."""
    assert code == CODES[sig], f"exit {code}, stderr {lines}"
    assert len(lines) == 1, f"one line on stderr, not {lines}"
    assert lines[0].startswith(f"interrupted by {signal.Signals(sig).name}: ")
    return published_views(lines[0])


def leftovers(dest):
    psync = pathlib.Path(dest) / "_psync"
    staged = [p for p in (psync / "tmp").rglob("*") if p.is_file()] if (psync / "tmp").exists() else []
    return [str(p) for p in staged] + ([str(psync / "lock")] if (psync / "lock").exists() else [])


def test_sigterm_and_sigint_local(lakes, tmp_path):
    dest = tmp_path / "dest"
    run(["materialize", "--source", str(lakes["a"][0]), "--dest", str(dest), "--quiet"])
    rng = random.Random(21)
    seconds = seconds_of(["materialize", "--source", str(lakes["b"][0]), "--dest", str(tmp_path / "probe"), "--quiet"])
    current, stopped = "a", 0
    for i in range(SIGNALS_LOCAL):
        target = "b" if current == "a" else "a"
        sig = signal.SIGTERM if i % 2 == 0 else signal.SIGINT
        code, lines = signalled(["materialize", "--source", str(lakes[target][0]), "--dest", str(dest), "--quiet"],
                                moment(rng, seconds), sig)
        if code == 0:
            current = target  # It finished before the signal.
            continue
        stopped += 1
        published = check_stopped(code, lines, sig)
        assert leftovers(dest) == [], f"signal {i}: left behind after {lines}"
        for v in VIEWS:
            want = target if v in published else current
            assert rows_duckdb(dest / v) == lakes[want][1][v], f"signal {i}: {v} is not {want}'s whole view"
        # The next run, at once and with default settings, completes the set.
        run(["materialize", "--source", str(lakes[target][0]), "--dest", str(dest), "--quiet"])
        for v in VIEWS:
            assert rows_duckdb(dest / v) == lakes[target][1][v]
        current = target
    assert stopped >= SIGNALS_LOCAL // 2, f"only {stopped} signals hit a running run"


def test_a_second_signal_ends_the_run_at_once(lakes, tmp_path):
    dest = tmp_path / "dest"
    run(["materialize", "--source", str(lakes["a"][0]), "--dest", str(dest), "--quiet"])
    started = time.monotonic()
    seconds = seconds_of(["materialize", "--source", str(lakes["b"][0]), "--dest", str(tmp_path / "probe"), "--quiet"])
    code, lines = signalled(["materialize", "--source", str(lakes["b"][0]), "--dest", str(dest), "--quiet"],
                            max(0.03, seconds / 2), signal.SIGTERM, again=True)
    assert code in (143, 0), lines
    assert time.monotonic() - started < 5
    for v in VIEWS:
        assert rows_duckdb(dest / v) in (lakes["a"][1][v], lakes["b"][1][v]), f"{v} is not whole"
    run(["materialize", "--source", str(lakes["b"][0]), "--dest", str(dest), "--quiet"])
    assert leftovers(dest) == []


def test_signals_during_incremental_runs(tmp_path):
    """Batches land; each incremental run is stopped at a random moment, then run to
    the end; the views equal a full run's."""
    generated = tmp_path / "generated"
    run(["generate", "--dest", str(generated), "--profiles", "4000", "--traits", "8", "--seed", "17",
         "--rows-per-file", "1000"])
    files = sorted(p.relative_to(generated) for p in generated.rglob("*.parquet"))
    random.Random(5).shuffle(files)
    batches = [files[i::3] for i in range(3)]
    lake, dest = tmp_path / "lake", tmp_path / "dest"
    incremental = ["materialize", "--source", str(lake), "--dest", str(dest), "--mode", "incremental", "--quiet"]
    rng = random.Random(8)
    previous = None
    for b, batch in enumerate(batches):
        for rel in batch:
            (lake / rel).parent.mkdir(parents=True, exist_ok=True)
            (lake / rel).write_bytes((generated / rel).read_bytes())
        full = tmp_path / f"full-{b}"
        run(["materialize", "--source", str(lake), "--dest", str(full), "--quiet"])
        expected = {v: rows_duckdb(full / v) for v in VIEWS}
        sig = signal.SIGINT if b % 2 else signal.SIGTERM
        probe = tmp_path / f"probe-{b}"
        if dest.exists():
            shutil.copytree(dest, probe)
        seconds = seconds_of([*incremental[:4], str(probe), *incremental[5:]])
        code, lines = signalled(incremental, moment(rng, seconds), sig)
        if code != 0:
            published = check_stopped(code, lines, sig)
            assert leftovers(dest) == []
            for v in VIEWS:
                want = expected if v in published else previous
                if want is not None:
                    assert rows_duckdb(dest / v) == want[v], f"batch {b}: {v} is not whole"
        run(incremental)
        for v in VIEWS:
            assert rows_duckdb(dest / v) == expected[v], f"batch {b}: {v} differs from a full run"
        previous = expected


def signals_remote(lakes, env, fs, scheme, prefix, count):
    """SIGTERM and SIGINT runs publishing into `scheme://prefix` (`prefix` starts with
    the bucket or container); checks what `test_sigterm_and_sigint_local` checks."""
    import pyarrow.fs as pafs
    dest = f"{scheme}://{prefix}"
    expected = {}
    for name in ("a", "b"):
        d = f"{prefix}-expect-{name}"
        run(["materialize", "--source", str(lakes[name][0]), "--dest", f"{scheme}://{d}", "--quiet"], env=env)
        expected[name] = {v: rows_s3(fs, f"{d}/{v}") for v in VIEWS}
    run(["materialize", "--source", str(lakes["a"][0]), "--dest", dest, "--quiet"], env=env)
    rng = random.Random(31)
    seconds = seconds_of(["materialize", "--source", str(lakes["b"][0]), "--dest", f"{scheme}://{prefix}-probe",
                          "--quiet"], env=env)
    current, stopped = "a", 0
    for i in range(count):
        target = "b" if current == "a" else "a"
        sig = signal.SIGTERM if i % 2 == 0 else signal.SIGINT
        code, lines = signalled(["materialize", "--source", str(lakes[target][0]), "--dest", dest, "--quiet"],
                                moment(rng, seconds), sig, env=env)
        if code == 0:
            current = target
            continue
        stopped += 1
        published = check_stopped(code, lines, sig)
        left = [f.path for f in fs.get_file_info(pafs.FileSelector(f"{prefix}/_psync", recursive=True,
                                                                     allow_not_found=True))
                if f.type == pafs.FileType.File and ("/_psync/tmp/" in f.path or f.path.endswith("/_psync/lock"))]
        assert left == [], f"signal {i}: left behind on {scheme}: {left}"
        for v in VIEWS:
            want = target if v in published else current
            assert rows_s3(fs, f"{prefix}/{v}") == expected[want][v], f"signal {i}: {v} is not {want}'s whole view"
        run(["materialize", "--source", str(lakes[target][0]), "--dest", dest, "--quiet"], env=env)
        current = target
    assert stopped >= count // 2, f"only {stopped} signals hit a running run"


def test_sigterm_and_sigint_s3(lakes):
    env, fs = s3_env()
    signals_remote(lakes, env, fs, "s3", f"psync-test/signals-{time.time_ns()}", SIGNALS_S3)


def test_sigterm_and_sigint_azure(lakes):
    env, fs = azure_env()
    signals_remote(lakes, env, fs, "az", f"psync-test/signals-{time.time_ns()}", SIGNALS_AZURE)
