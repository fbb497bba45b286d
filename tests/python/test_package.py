"""The Python package (crates/psync-python, module psync_lake) against the CLI it
wraps: every query of the pack gives the rows `query --format json` prints; the
results are Arrow PyCapsules that pyarrow, Polars and DuckDB read (pyarrow not
imported first); errors are the CLI's one line; Ctrl-C stops a long query."""

import datetime
import json
import pathlib
import subprocess
import sys
import textwrap

import pyarrow as pa
import pytest

import psync_lake as ps
from test_readers import ROOT, binary

SAMPLE = ROOT / "data" / "sample"
PACK = sorted((ROOT / "queries").glob("*.sql"))
# The parameters tests/pack.rs gives the pack on the sample lake.
PARAMS = {"profile": "sid_000000b4", "trait": "plan"}


@pytest.fixture(scope="module")
def lake():
    return ps.Lake(str(SAMPLE))


def cli(*args):
    return subprocess.run([binary(), *args], capture_output=True, text=True)


def json_values(text: str):
    """The JSON arrays the CLI printed, one per statement."""
    out, i, dec = [], 0, json.JSONDecoder()
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            return out
        value, i = dec.raw_decode(text, i)
        out.append(value)


def as_json(value, typ):
    """An Arrow value as the CLI's JSON writer prints it (timestamps as RFC 3339)."""
    if value is None:
        return None
    if pa.types.is_timestamp(typ):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
            return value.isoformat() + "Z"
        return value.isoformat()
    if pa.types.is_date(typ):
        return value.isoformat()
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return [as_json(v, typ.value_type) for v in value]
    return value


def normalized_cli(rows, schema):
    """The CLI's rows with every timestamp in one form, NULL columns present."""
    out = []
    for r in rows:
        row = {}
        for f in schema:
            v = r.get(f.name)
            if isinstance(v, str) and pa.types.is_timestamp(f.type):
                tz = v.endswith("Z")
                t = datetime.datetime.fromisoformat(v[:-1] if tz else v)
                v = t.isoformat() + ("Z" if tz else "")
            row[f.name] = v
        out.append(row)
    return out


def python_rows(result):
    table = pa.table(result)
    return [{f.name: as_json(r[f.name], f.type) for f in table.schema} for r in table.to_pylist()], table.schema


@pytest.mark.parametrize("query", PACK, ids=[q.stem for q in PACK])
def test_every_pack_query_gives_the_cli_rows(lake, query):
    sql = query.read_text()
    # `--command=`: a pack file starts with `--` comments, which clap would read as a flag.
    args = ["query", "--source", str(SAMPLE), "--format", "json", f"--command={sql}"]
    for k, v in PARAMS.items():
        args += ["-v", f"{k}={v}"]
    p = cli(*args)
    if query.stem == "person_pages":
        # The sample lake lands no `pages`: the same one line in both.
        assert p.returncode == 2
        with pytest.raises(ps.QueryError) as e:
            lake.sql(sql, params=PARAMS)
        assert p.stderr.strip() == f"error: {e.value}"
        assert "this lake has no table 'pages'" in str(e.value)
        return
    assert p.returncode == 0, p.stderr
    expected = json_values(p.stdout)[-1]
    rows, schema = python_rows(lake.sql(sql, params=PARAMS))
    assert len(rows) > 0, query.stem
    assert rows == normalized_cli(expected, schema)


def test_params_are_the_clis_variables(lake):
    r = pa.table(lake.sql("SELECT :n + 1 AS n, :who AS who, $who AS again", params={"n": 41, "who": "it's"}))
    assert r.to_pylist() == [{"n": 42, "who": "it's", "again": "it's"}]


def test_tables_lists_landed_tables_then_views(lake):
    tables = {t["name"]: t for t in lake.tables()}
    assert tables["id_graph_updates"]["origin"] == "landed"
    assert tables["id_graph_updates"]["rows"] > 0
    assert tables["profile_traits"]["origin"] == "view (on demand)"
    names = [t["name"] for t in lake.tables()]
    assert names.index("id_graph_updates") < names.index("id_graph")


def test_the_last_statement_is_the_result_and_results_read_twice(lake):
    r = lake.sql("SELECT 1 AS a; SELECT segment_id FROM id_graph ORDER BY segment_id LIMIT 3")
    assert r.column_names == ["segment_id"]
    assert len(r) == 3
    assert pa.table(r).equals(pa.table(r))


def test_capsules_without_pyarrow_imported_first():
    script = textwrap.dedent(f"""
        import sys
        import psync_lake as ps
        import polars as pl
        import duckdb
        lake = ps.Lake({str(SAMPLE)!r})
        tbl = lake.sql("SELECT segment_id, canonical_segment_id FROM id_graph ORDER BY segment_id")
        assert "pyarrow" not in sys.modules, "psync_lake or polars imported pyarrow"
        n = tbl.num_rows
        df = pl.DataFrame(tbl)
        assert df.height == n and df.columns == ["segment_id", "canonical_segment_id"]
        assert tbl.to_polars().equals(df)
        assert "pyarrow" not in sys.modules, "polars needed pyarrow"
        assert duckdb.sql("SELECT count(*) FROM tbl").fetchall()[0][0] == n
        first = duckdb.sql("SELECT min(segment_id) FROM tbl").fetchall()[0][0]
        assert first == df["segment_id"][0]
        import pyarrow as pa
        t = pa.table(tbl)
        assert t.num_rows == n and t.column("segment_id").to_pylist() == df["segment_id"].to_list()
        assert tbl.to_pandas().shape == (n, 2)
        print(n)
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert int(p.stdout) > 100


def test_an_empty_result_keeps_its_schema(lake):
    t = pa.table(lake.sql("SELECT segment_id FROM id_graph WHERE false"))
    assert t.num_rows == 0 and t.schema.names == ["segment_id"]


def test_a_missing_lake_is_the_clis_line(tmp_path):
    missing = tmp_path / "nope"
    p = cli("query", "--source", str(missing), "-c", "SELECT 1")
    assert p.returncode == 2
    with pytest.raises(ps.LakeError) as e:
        ps.Lake(str(missing))
    assert isinstance(e.value, ps.PsyncError)
    assert p.stderr.strip() == f"error: {e.value}"


@pytest.mark.parametrize("sql", ["SELECT * FROM nope", "SELEC 1", "SELECT :who", "SELECT no_such_column FROM id_graph"])
def test_a_failing_statement_is_the_clis_line(lake, sql):
    p = cli("query", "--source", str(SAMPLE), "-c", sql)
    assert p.returncode == 2
    with pytest.raises(ps.QueryError) as e:
        lake.sql(sql)
    assert p.stderr.strip() == f"error: {e.value}"


def test_bad_arguments_raise_config_errors(lake):
    with pytest.raises(ps.ConfigError, match="needs a destination"):
        lake.materialize()
    with pytest.raises(ps.ConfigError, match="unknown storage option 's3_endpiont'"):
        ps.Lake(str(SAMPLE), s3_endpiont="http://x")
    with pytest.raises(ps.ConfigError, match="not a size"):
        ps.Lake(str(SAMPLE), memory_limit="lots")


def test_ctrl_c_stops_a_long_query_and_the_gil_is_free_meanwhile():
    # SIGINT from a timer thread, as Ctrl-C in a notebook or a shell would.
    script = textwrap.dedent(f"""
        import os, signal, threading, time
        import psync_lake as ps
        lake = ps.Lake({str(SAMPLE)!r}, threads=2)
        ticks = [0]
        def tick():
            while True:
                ticks[0] += 1
                time.sleep(0.01)
        threading.Thread(target=tick, daemon=True).start()
        threading.Timer(1.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        t = time.monotonic()
        try:
            lake.sql("SELECT sum(value % 7) FROM range(1000000000000)")
            print("finished")
        except KeyboardInterrupt:
            print("interrupted", round(time.monotonic() - t, 2), ticks[0])
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    word, seconds, ticks = p.stdout.split()
    assert word == "interrupted"
    assert 1.4 < float(seconds) < 5
    # The other thread ran while the query did: the GIL was released.
    assert int(ticks) > 50


def test_a_stream_gives_the_rows_of_sql_batch_by_batch(lake):
    q = "SELECT 1 AS a; SELECT segment_id, canonical_segment_id FROM id_graph ORDER BY segment_id"
    whole = pa.table(lake.sql(q))
    s = lake.stream(q)
    assert s.column_names == ["segment_id", "canonical_segment_id"]
    parts = [pa.table(b) for b in s]
    assert len(parts) >= 1 and pa.concat_tables(parts).equals(whole)
    assert list(s) == []  # read to its end: nothing more
    # Through the C stream interface, in each reader.
    assert pa.RecordBatchReader.from_stream(lake.stream(q)).read_all().equals(whole)
    import polars as pl
    import duckdb
    assert pl.DataFrame(lake.stream(q)).equals(pl.DataFrame(lake.sql(q)))
    st = lake.stream(q)
    assert duckdb.sql("SELECT count(*) FROM st").fetchall()[0][0] == whole.num_rows
    assert pa.table(lake.stream(q).read_all()).equals(whole)


def test_a_stream_is_read_once_and_a_failure_is_the_clis_line(lake):
    s = lake.stream("SELECT segment_id FROM id_graph")
    pa.RecordBatchReader.from_stream(s).read_all()
    with pytest.raises(ps.ConfigError, match="read once"):
        pa.RecordBatchReader.from_stream(s)
    with pytest.raises(ps.ConfigError, match="read once"):
        s.read_all()
    # Planning errors raise at once; errors while running raise from the read.
    with pytest.raises(ps.QueryError):
        lake.stream("SELECT * FROM nope")
    bad = "SELECT arrow_cast('x' || segment_id, 'Int64') FROM id_graph WHERE segment_id = 'sid_00000001'"
    with pytest.raises(ps.QueryError) as e:
        list(lake.stream(bad))
    p = cli("query", "--source", str(SAMPLE), "-c", bad)
    assert p.returncode == 2 and p.stderr.strip() == f"error: {e.value}"
    with pytest.raises(Exception, match="Cast error|cast"):
        pa.RecordBatchReader.from_stream(lake.stream(bad)).read_all()


def test_ctrl_c_stops_a_stream_being_read():
    script = textwrap.dedent(f"""
        import os, signal, threading, time
        import psync_lake as ps
        lake = ps.Lake({str(SAMPLE)!r}, threads=2)
        s = lake.stream("SELECT sum(value % 7) FROM range(1000000000000)")
        threading.Timer(1.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        t = time.monotonic()
        try:
            for batch in s:
                print("finished")
        except KeyboardInterrupt:
            print("interrupted", round(time.monotonic() - t, 2))
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    word, seconds = p.stdout.split()
    assert word == "interrupted" and 1.4 < float(seconds) < 5
