"""Splits a lake in time for the incremental benchmark (not timed): the delta is
every row with timestamp >= T, T chosen so that about `--fraction` of the rows of
the update tables are in it; the base is the rest. Both keep the lake's layout
(one folder per table; base files keep their paths, delta files are new ones), so
"the delta lands" is copying its files into a copy of the base.

Prints one JSON object: cutoff, base_rows and delta_rows (update tables).
"""

import argparse
import datetime
import json
import os

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq

from common import table_files

UPDATE_TABLES = ("id_graph_updates", "external_id_mapping_updates", "profile_traits_updates")


def day_time(us):
    return datetime.datetime.fromtimestamp(us / 1e6, datetime.timezone.utc)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lake", required=True)
    p.add_argument("--fraction", type=float, required=True)
    p.add_argument("--base", required=True)
    p.add_argument("--delta", required=True)
    a = p.parse_args()
    tables = sorted(d for d in os.listdir(a.lake)
                    if os.path.isdir(os.path.join(a.lake, d)) and not d.startswith(("_", ".")))
    con = duckdb.connect()
    union = " UNION ALL ".join(
        f"SELECT epoch_us(\"timestamp\") AS t FROM read_parquet({table_files(a.lake, t)!r}, "
        "hive_partitioning = false)"
        for t in UPDATE_TABLES if table_files(a.lake, t))
    cutoff = con.execute(
        f"SELECT quantile_disc(t, {1.0 - a.fraction}) FROM ({union})").fetchone()[0]
    counts = {"base_rows": 0, "delta_rows": 0}
    for table in tables:
        parts = []
        for f in table_files(a.lake, table):
            rel = os.path.relpath(f, a.lake)
            t = pq.read_table(f)
            if "timestamp" in t.column_names:
                us = pc.cast(t["timestamp"], "int64")
                late = pc.fill_null(pc.greater_equal(us, cutoff), False)
                base, delta = t.filter(pc.invert(late)), t.filter(late)
            else:
                base, delta = t, t.slice(0, 0)
            os.makedirs(os.path.dirname(os.path.join(a.base, rel)), exist_ok=True)
            pq.write_table(base, os.path.join(a.base, rel), compression="zstd")
            if delta.num_rows:
                parts.append(delta)
            if table in UPDATE_TABLES:
                counts["base_rows"] += base.num_rows
                counts["delta_rows"] += delta.num_rows
        day = day_time(cutoff).date()
        for i, d in enumerate(parts):
            path = os.path.join(a.delta, table, f"day={day}", f"delta-{i:05}.parquet")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            pq.write_table(d, path, compression="zstd")
    print(json.dumps({"cutoff_us": cutoff, "cutoff": str(day_time(cutoff)), **counts}))


if __name__ == "__main__":
    main()
