"""The three views (SPEC §3) in DuckDB, in one of two styles:

  best  hand-written for speed: every update table is ranked once in update order
        (row_number() over one global sort: an integer order key), then one
        aggregation per table takes arg_max(value, rank), no per-group windows;
  dbt   the style of Segment's dbt models: row_number() over (partition by ...) = 1
        for the latest row, last_value(... IGNORE NULLS) over a window per trait.

Both follow merge chains exactly (pointer jumping until a fixpoint, from Python)
and break merge cycles at their oldest edge like psync-lake.

Order of updates: seq, then timestamp, then uuid_ts, NULL lowest. On a full tie of
the three, `best` takes the greatest value for id_graph and external_id_mapping (the
value is part of the ranking) and an arbitrary one for traits; `dbt` takes an
arbitrary row. The generated lake has full ties only between identical duplicate
rows. (A rank is faster in DuckDB than a struct key: arg_max over a 3-field struct
took twice as long for the traits.)
"""

import duckdb

from common import parse_args, table_glob, traits, view_path, cycle_breakers

ORDER = 'seq ASC NULLS FIRST, "timestamp" ASC NULLS FIRST, uuid_ts ASC NULLS FIRST'


def q(name):
    return '"' + name.replace('"', '""') + '"'


def ranked(src, where, ties=""):
    """The rows of `src` with `r`, their position in update order (1 = oldest)."""
    return (f"(SELECT *, row_number() OVER (ORDER BY {ORDER}{ties}) AS r "
            f"FROM {src} WHERE {where})")


def read(lake, table, columns):
    cols = ", ".join(q(c) for c in columns)
    return (f"(SELECT {cols} FROM read_parquet('{table_glob(lake, table)}', "
            f"hive_partitioning = false, union_by_name = true))")


def nodes_best(con, lake):
    src = read(lake, "id_graph_updates",
               ["segment_id", "canonical_segment_id", "seq", "timestamp", "uuid_ts"])
    where = "segment_id IS NOT NULL AND canonical_segment_id IS NOT NULL"
    con.execute(f"""
        CREATE TEMP TABLE nodes AS
        SELECT segment_id, l.target AS target, l.ts AS ts, l.seq AS seq, l.uuid_ts AS uuid_ts
        FROM (
            SELECT segment_id,
                   arg_max({{'target': canonical_segment_id, 'ts': "timestamp", 'seq': seq,
                             'uuid_ts': uuid_ts}}, r) AS l
            FROM {ranked(src, where, ', canonical_segment_id, "timestamp"')}
            GROUP BY segment_id)""")


def nodes_dbt(con, lake):
    src = read(lake, "id_graph_updates",
               ["segment_id", "canonical_segment_id", "seq", "timestamp", "uuid_ts"])
    con.execute(f"""
        CREATE TEMP TABLE nodes AS
        SELECT segment_id, canonical_segment_id AS target, "timestamp" AS ts, seq, uuid_ts
        FROM (
            SELECT *, row_number() OVER (
                PARTITION BY segment_id
                ORDER BY seq DESC NULLS LAST, "timestamp" DESC NULLS LAST,
                         uuid_ts DESC NULLS LAST) AS rn
            FROM {src}
            WHERE segment_id IS NOT NULL AND canonical_segment_id IS NOT NULL)
        WHERE rn = 1""")


def jump(con, exclude_breakers):
    """Pointer jumping over the edges: each round every pointer that is itself an
    edge's node moves to that node's pointer. Returns how many nodes were still
    pending when it stopped (0, or the nodes on or leading into a cycle) and how
    many rounds moved a pointer."""
    anti = "WHERE node NOT IN (SELECT node FROM breakers)" if exclude_breakers else ""
    con.execute(f"CREATE OR REPLACE TEMP TABLE ptrs AS "
                f"SELECT node, ptr, false AS hopped FROM edges {anti}")
    last, moved = None, 0
    while True:
        con.execute("""
            CREATE OR REPLACE TEMP TABLE nxt AS
            SELECT a.node, coalesce(b.ptr, a.ptr) AS ptr, b.node IS NOT NULL AS hopped
            FROM ptrs a LEFT JOIN ptrs b ON a.ptr = b.node""")
        pending = con.execute("SELECT count(*) FROM nxt WHERE hopped").fetchone()[0]
        con.execute("DROP TABLE ptrs")
        con.execute("ALTER TABLE nxt RENAME TO ptrs")
        if pending == 0 or pending == last:
            return pending, moved
        moved += 1
        last = pending


def resolve_id_graph(con, out):
    con.execute("""
        CREATE TEMP TABLE edges AS
        SELECT segment_id AS node, target AS ptr, seq, ts, uuid_ts
        FROM nodes WHERE target <> segment_id""")
    stuck, _ = jump(con, False)
    have_breakers = False
    if stuck:
        rows = con.execute("""
            SELECT e.node, e.ptr, e.seq, epoch_us(e.ts), epoch_us(e.uuid_ts)
            FROM edges e JOIN ptrs p ON p.node = e.node WHERE p.hopped""").fetchall()
        con.execute("CREATE TEMP TABLE breakers (node VARCHAR)")
        con.executemany("INSERT INTO breakers VALUES (?)", [[b] for b in cycle_breakers(rows)])
        have_breakers = True
        jump(con, True)
    breaker = ("CASE WHEN n.segment_id IN (SELECT node FROM breakers) THEN n.segment_id END"
               if have_breakers else "NULL")
    con.execute(f"""
        CREATE TEMP TABLE id_graph AS
        SELECT n.segment_id,
               coalesce({breaker}, p.ptr, n.target) AS canonical_segment_id,
               n.ts AS "timestamp"
        FROM nodes n LEFT JOIN ptrs p ON p.node = n.segment_id""")
    con.execute(f"COPY id_graph TO '{view_path(out, 'id_graph')}' "
                "(FORMAT parquet, COMPRESSION zstd)")


def external_id_mapping(con, lake, out, style):
    src = read(lake, "external_id_mapping_updates",
               ["segment_id", "external_id_type", "external_id_value", "external_id_hash",
                "seq", "timestamp", "uuid_ts"])
    where = ("segment_id IS NOT NULL AND external_id_type IS NOT NULL "
             "AND external_id_value IS NOT NULL")
    if style == "best":
        ties = ", segment_id, external_id_hash NULLS FIRST, \"timestamp\" NULLS FIRST"
        latest = f"""
            SELECT external_id_type, external_id_value,
                   l.sid AS sid, l.hash AS hash, l.ts AS ts
            FROM (
                SELECT external_id_type, external_id_value,
                       arg_max({{'sid': segment_id, 'hash': external_id_hash,
                                 'ts': "timestamp"}}, r) AS l
                FROM {ranked(src, where, ties)}
                GROUP BY external_id_type, external_id_value)"""
    else:
        latest = f"""
            SELECT external_id_type, external_id_value,
                   segment_id AS sid, external_id_hash AS hash, "timestamp" AS ts
            FROM (
                SELECT *, row_number() OVER (
                    PARTITION BY external_id_type, external_id_value
                    ORDER BY seq DESC NULLS LAST, "timestamp" DESC NULLS LAST,
                             uuid_ts DESC NULLS LAST) AS rn
                FROM {src} WHERE {where})
            WHERE rn = 1"""
    con.execute(f"""
        COPY (
            SELECT coalesce(g.canonical_segment_id, l.sid) AS canonical_segment_id,
                   l.external_id_type, l.external_id_value,
                   coalesce(l.hash, sha1(l.external_id_type || l.external_id_value))
                       AS external_id_hash,
                   l.ts AS "timestamp"
            FROM ({latest}) l LEFT JOIN id_graph g ON g.segment_id = l.sid
        ) TO '{view_path(out, 'external_id_mapping')}' (FORMAT parquet, COMPRESSION zstd)""")


def profile_traits(con, lake, out, style):
    ts = traits(lake)
    src = read(lake, "profile_traits_updates",
               ["segment_id", "seq", "timestamp", "uuid_ts"] + ts)
    resolved = f"""
        SELECT coalesce(g.canonical_segment_id, u.segment_id) AS owner, u.*
        FROM {src} u LEFT JOIN id_graph g ON g.segment_id = u.segment_id
        WHERE u.segment_id IS NOT NULL"""
    if style == "best":
        aggs = "".join(f", arg_max({q(t)}, r) AS {q(t)}" for t in ts)
        owned = f"""
            SELECT coalesce(g.canonical_segment_id, u.segment_id) AS owner{aggs}
            FROM {ranked(src, "segment_id IS NOT NULL")} u
            LEFT JOIN id_graph g ON g.segment_id = u.segment_id
            GROUP BY owner"""
    else:
        lasts = "".join(f", last_value({q(t)} IGNORE NULLS) OVER w AS {q(t)}" for t in ts)
        owned = f"""
            SELECT owner{"".join(", " + q(t) for t in ts)}
            FROM (
                SELECT owner{lasts},
                       row_number() OVER (
                           PARTITION BY owner
                           ORDER BY seq DESC NULLS LAST, "timestamp" DESC NULLS LAST,
                                    uuid_ts DESC NULLS LAST) AS rn
                FROM ({resolved})
                WINDOW w AS (
                    PARTITION BY owner
                    ORDER BY seq ASC NULLS FIRST, "timestamp" ASC NULLS FIRST,
                             uuid_ts ASC NULLS FIRST
                    ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING))
            WHERE rn = 1"""
    known = """
        SELECT k.sid,
               CASE WHEN g.canonical_segment_id <> k.sid THEN g.canonical_segment_id END
                   AS merged_to
        FROM (SELECT segment_id AS sid FROM id_graph
              UNION SELECT canonical_segment_id FROM id_graph) k
        LEFT JOIN id_graph g ON g.segment_id = k.sid"""
    cols = "".join(f", o.{q(t)}" for t in ts)
    con.execute(f"""
        COPY (
            SELECT coalesce(k.sid, o.owner) AS canonical_segment_id{cols}, k.merged_to
            FROM ({known}) k FULL JOIN ({owned}) o ON k.sid = o.owner
        ) TO '{view_path(out, 'profile_traits')}' (FORMAT parquet, COMPRESSION zstd)""")


def main():
    a = parse_args(__doc__.splitlines()[0],
                   lambda p: p.add_argument("--style", choices=["best", "dbt"], default="best"))
    con = duckdb.connect()
    con.execute(f"SET threads = {a.threads}")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET TimeZone = 'UTC'")
    (nodes_best if a.style == "best" else nodes_dbt)(con, a.lake)
    resolve_id_graph(con, a.out)
    external_id_mapping(con, a.lake, a.out, a.style)
    profile_traits(con, a.lake, a.out, a.style)


if __name__ == "__main__":
    main()
