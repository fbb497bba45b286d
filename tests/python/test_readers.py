"""Real readers (DuckDB, Polars, pyarrow from PyPI) open psync-lake's published
views by path and see exactly the views: the row counts the binary reports in its
run record, plain UTF-8 strings, microsecond UTC timestamps, the same rows in all
three readers."""

import json
import os
import pathlib
import subprocess

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
VIEWS = ["id_graph", "external_id_mapping", "profile_traits"]


def binary() -> str:
    b = os.environ.get("PSYNC_BIN")
    if b:
        return b
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    for profile in ("release", "debug"):
        p = target / profile / "psync-lake"
        if p.exists():
            return str(p)
    pytest.fail("psync-lake binary not found: set PSYNC_BIN or build it")


@pytest.fixture(scope="module", params=["sample", "case_study"])
def published(request, tmp_path_factory):
    dest = tmp_path_factory.mktemp("views") / request.param
    subprocess.run(
        [binary(), "materialize", "--source", str(ROOT / "data" / request.param), "--dest", str(dest), "--quiet"],
        check=True,
    )
    record = json.loads((dest / "_psync" / "last_run.json").read_text())
    return dest, {v["view"]: v["rows"] for v in record["views"]}


def sorted_rows(table: pa.Table):
    return sorted(tuple(r.values()) for r in table.to_pylist())


@pytest.mark.parametrize("view", VIEWS)
def test_readers_agree_with_the_run_record(published, view):
    dest, counts = published
    folder = dest / view
    expected = counts[view]
    assert expected > 0

    via_duckdb = duckdb.sql(f"SELECT * FROM '{folder}/*.parquet'").arrow()
    if isinstance(via_duckdb, pa.RecordBatchReader):
        via_duckdb = via_duckdb.read_all()
    via_polars = pl.read_parquet(folder).to_arrow()
    via_pyarrow = pq.read_table(folder)

    for t in (via_duckdb, via_polars, via_pyarrow):
        assert t.num_rows == expected

    # Same rows whichever reader opened the folder.
    reference = sorted_rows(via_pyarrow)
    assert sorted_rows(via_duckdb) == reference
    assert sorted_rows(via_polars.cast(via_pyarrow.schema)) == reference


@pytest.mark.parametrize("view", VIEWS)
def test_types_are_plain(published, view):
    dest, _ = published
    schema = pq.read_schema(dest / view / f"{view}.parquet")
    for field in schema:
        assert not pa.types.is_string_view(field.type), field
        assert not pa.types.is_large_string(field.type), field
        if pa.types.is_timestamp(field.type):
            assert field.type.unit == "us" and field.type.tz == "UTC", field
    assert pa.types.is_string(schema.field(0).type)
    meta = pq.ParquetFile(dest / view / f"{view}.parquet").metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_case_study_values(tmp_path):
    dest = tmp_path / "views"
    subprocess.run(
        [binary(), "materialize", "--source", str(ROOT / "data" / "case_study"), "--dest", str(dest), "--quiet"],
        check=True,
    )
    rows = duckdb.sql(
        f"SELECT canonical_segment_id, email, merged_to FROM '{dest}/profile_traits/*.parquet' ORDER BY 1"
    ).fetchall()
    assert rows == [("profile_1", "jane.kim@segment.com", None), ("profile_2", None, "profile_1")]
    owners = pl.read_parquet(dest / "external_id_mapping")["canonical_segment_id"].unique().to_list()
    assert owners == ["profile_1"]
