"""`Lake.register(ctx)`: the lake's tables and psync's aggregate functions in a
datafusion-python 55 SessionContext, through DataFusion's FFI."""

import datafusion
import pyarrow as pa
import pytest

import psync_lake as ps
from test_readers import ROOT

SAMPLE = ROOT / "data" / "sample"


@pytest.fixture(scope="module")
def both():
    lake = ps.Lake(str(SAMPLE))
    ctx = datafusion.SessionContext()
    names = lake.register(ctx)
    return lake, ctx, names


def table(df) -> pa.Table:
    return pa.Table.from_batches(df.collect()) if not hasattr(df, "to_arrow_table") else df.to_arrow_table()


def test_registers_the_tables_and_views(both):
    lake, ctx, names = both
    assert {"id_graph_updates", "profile_traits_updates", "id_graph", "profile_traits"} <= set(names)
    theirs = table(ctx.sql("SELECT * FROM profile_traits ORDER BY canonical_segment_id"))
    ours = lake.sql("SELECT * FROM profile_traits ORDER BY canonical_segment_id").to_arrow()
    assert theirs.num_rows == ours.num_rows > 0
    assert theirs.equals(ours)


def test_last_seen_over_profile_traits_and_the_landed_updates(both):
    lake, ctx, _ = both
    # last_seen(value, ts): the value at the latest timestamp, as the views use it.
    sql = """
        SELECT p.canonical_segment_id, last_seen(u.plan, u.timestamp) AS plan, p.plan AS view_plan
        FROM profile_traits p
        JOIN id_graph g ON g.canonical_segment_id = p.canonical_segment_id
        JOIN profile_traits_updates u ON u.segment_id = g.segment_id
        GROUP BY p.canonical_segment_id, p.plan
        ORDER BY p.canonical_segment_id
    """
    theirs = table(ctx.sql(sql))
    ours = lake.sql(sql).to_arrow()
    assert theirs.num_rows > 0
    assert theirs.equals(ours)


def test_filters_pushed_down_through_the_ffi(both):
    lake, ctx, _ = both
    sql = "SELECT segment_id, canonical_segment_id FROM id_graph WHERE segment_id = 'sid_000000b4'"
    theirs = table(ctx.sql(sql)).to_pylist()
    assert theirs == lake.sql(sql).to_arrow().to_pylist()
    assert len(theirs) == 1
