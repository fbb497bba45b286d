"""Prepares a benchmark run (not timed): counts the input rows, finds the trait
columns and the longest merge chain, and writes the DataFusion SQL scripts that
`psync-lake query -f` runs:

  stock.sql  the three views in stock DataFusion SQL (built-in aggregates only, no
             psync UDAFs), written to Parquet with COPY;
  scan.sql   the scan floor: decodes every column the views read, nothing else.

Prints one JSON object: input_rows per table, traits, hops, cycles.
"""

import argparse
import json
import math
import os

import duckdb
import pyarrow.parquet as pq

import duckdb_views
from common import VIEWS, table_files, traits, view_path

TABLES = ("id_graph_updates", "external_id_mapping_updates", "profile_traits_updates")
ORDER_BY = 'ORDER BY seq ASC NULLS FIRST, "timestamp" ASC NULLS FIRST, uuid_ts ASC NULLS FIRST'
ORDER_BY_U = ('ORDER BY u.seq ASC NULLS FIRST, u."timestamp" ASC NULLS FIRST, '
              'u.uuid_ts ASC NULLS FIRST')


def q(name):
    return '"' + name.replace('"', '""') + '"'


def chain_rounds(lake, threads):
    """Pointer-doubling rounds that move a pointer in this lake, and whether it has cycles."""
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    duckdb_views.nodes_best(con, lake)
    con.execute("""
        CREATE TEMP TABLE edges AS
        SELECT segment_id AS node, target AS ptr FROM nodes WHERE target <> segment_id""")
    stuck, moved = duckdb_views.jump(con, False)
    return moved, stuck > 0


def stock_sql(lake, out, ts, hops, cycles):
    lines = [f"""-- The three views in stock DataFusion SQL: built-in aggregates (last_value with
-- ORDER BY, IGNORE NULLS for traits), no psync UDAFs. The only psync function used is
-- the scalar sha1_hex (DataFusion has no SHA-1) for identifiers landed without a hash.
-- Order of updates: seq, timestamp, uuid_ts ascending, NULL first; last_value takes the
-- last row in that order (a full tie is broken arbitrarily).
--
-- Merge chains: SQL has no loop, so the chains are followed by {hops} rounds of pointer
-- doubling (each round a self-join; h rounds follow chains of up to 2^h edges). prep.py
-- measured this lake before writing this file: {hops} rounds reach the end of every
-- chain{" (its longest chain needs exactly that many)" if hops else ""}.
-- {"THIS LAKE HAS MERGE CYCLES: stock SQL does not break them, so its id_graph is wrong for them." if cycles else "The lake has no merge cycles, which this SQL does not break."}
CREATE TABLE b_nodes AS
SELECT segment_id,
       last_value(named_struct('target', canonical_segment_id, 'ts', "timestamp") {ORDER_BY}) AS l
FROM id_graph_updates
WHERE segment_id IS NOT NULL AND canonical_segment_id IS NOT NULL
GROUP BY segment_id;
CREATE TABLE b_hop0 AS
SELECT segment_id AS node, l['target'] AS ptr FROM b_nodes WHERE l['target'] <> segment_id;"""]
    for h in range(1, hops + 1):
        lines.append(f"""CREATE TABLE b_hop{h} AS
SELECT a.node, coalesce(b.ptr, a.ptr) AS ptr
FROM b_hop{h - 1} a LEFT JOIN b_hop{h - 1} b ON a.ptr = b.node;""")
    lines.append(f"""CREATE TABLE b_id_graph AS
SELECT n.segment_id, coalesce(h.ptr, n.l['target']) AS canonical_segment_id, n.l['ts'] AS "timestamp"
FROM b_nodes n LEFT JOIN b_hop{hops} h ON h.node = n.segment_id;
COPY (SELECT * FROM b_id_graph)
TO '{view_path(out, "id_graph")}' STORED AS PARQUET OPTIONS (compression 'zstd(1)');
COPY (
  SELECT coalesce(g.canonical_segment_id, l.l['sid']) AS canonical_segment_id,
         l.external_id_type, l.external_id_value,
         coalesce(l.l['hash'], sha1_hex(concat(l.external_id_type, l.external_id_value)))
             AS external_id_hash,
         l.l['ts'] AS "timestamp"
  FROM (
    SELECT external_id_type, external_id_value,
           last_value(named_struct('sid', segment_id, 'hash', external_id_hash, 'ts', "timestamp")
                      {ORDER_BY}) AS l
    FROM external_id_mapping_updates
    WHERE segment_id IS NOT NULL AND external_id_type IS NOT NULL
      AND external_id_value IS NOT NULL
    GROUP BY external_id_type, external_id_value) l
  LEFT JOIN b_id_graph g ON g.segment_id = l.l['sid']
) TO '{view_path(out, "external_id_mapping")}' STORED AS PARQUET OPTIONS (compression 'zstd(1)');""")
    aggs = "".join(f",\n           last_value(u.{q(t)} {ORDER_BY_U}) IGNORE NULLS AS {q(t)}" for t in ts)
    cols = "".join(f", o.{q(t)}" for t in ts)
    lines.append(f"""COPY (
  WITH owned AS (
    SELECT coalesce(g.canonical_segment_id, u.segment_id) AS owner{aggs}
    FROM profile_traits_updates u LEFT JOIN b_id_graph g ON g.segment_id = u.segment_id
    WHERE u.segment_id IS NOT NULL
    GROUP BY coalesce(g.canonical_segment_id, u.segment_id)),
  known AS (
    SELECT k.sid,
           CASE WHEN g.canonical_segment_id <> k.sid THEN g.canonical_segment_id END AS merged_to
    FROM (SELECT segment_id AS sid FROM b_id_graph
          UNION SELECT canonical_segment_id AS sid FROM b_id_graph) k
    LEFT JOIN b_id_graph g ON g.segment_id = k.sid)
  SELECT coalesce(k.sid, o.owner) AS canonical_segment_id{cols}, k.merged_to
  FROM known k FULL JOIN owned o ON k.sid = o.owner
) TO '{view_path(out, "profile_traits")}' STORED AS PARQUET OPTIONS (compression 'zstd(1)');""")
    return "\n".join(lines) + "\n"


def scan_sql(ts):
    """One count per table whose filter needs every column the views read decoded
    (a bare count(col) could be answered from Parquet statistics)."""
    cols = {
        "id_graph_updates": ["segment_id", "canonical_segment_id", "seq", "timestamp", "uuid_ts"],
        "external_id_mapping_updates": ["segment_id", "external_id_type", "external_id_value",
                                        "external_id_hash", "seq", "timestamp", "uuid_ts"],
        "profile_traits_updates": ["segment_id", "seq", "timestamp", "uuid_ts"] + ts,
    }
    out = ["-- The scan floor: decode the columns the three views read, and nothing else."]
    for table, cs in cols.items():
        cond = " OR ".join(f"{q(c)} IS NOT NULL" for c in cs)
        out.append(f"SELECT count(*) AS rows FROM {table} WHERE {cond};")
    return "\n".join(out) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lake", required=True)
    p.add_argument("--sql-dir", required=True)
    p.add_argument("--stock-out", required=True, help="where stock.sql writes its views")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    a = p.parse_args()
    rows = {t: sum(pq.read_metadata(f).num_rows for f in table_files(a.lake, t)) for t in TABLES}
    ts = traits(a.lake)
    moved, cycles = chain_rounds(a.lake, a.threads)
    hops = max(moved, 1)
    os.makedirs(a.sql_dir, exist_ok=True)
    for v in VIEWS:
        os.makedirs(os.path.join(a.stock_out, v), exist_ok=True)
    with open(os.path.join(a.sql_dir, "stock.sql"), "w") as f:
        f.write(stock_sql(a.lake, a.stock_out, ts, hops, cycles))
    with open(os.path.join(a.sql_dir, "scan.sql"), "w") as f:
        f.write(scan_sql(ts))
    print(json.dumps({"input_rows": rows, "traits": ts, "hops": hops, "cycles": cycles,
                      "chain_rounds": moved}))


if __name__ == "__main__":
    main()
