"""The three views (SPEC §3) in Polars: lazy scans and plans, run by the streaming
engine where it can (the final views are sunk to Parquet straight from their plans).

"Latest" is a global sort by (seq, timestamp, uuid_ts), NULL first, followed by a
group_by whose aggregations take the last row (or last non-NULL value) of each
group: Polars keeps the frame's order inside every group. Merge chains are followed
by pointer jumping until a fixpoint; cycles are broken at their oldest edge.
On a full tie of the order key the row is arbitrary (the generated lake has full
ties only between identical duplicate rows).
"""

import hashlib

import polars as pl

from common import parse_args, table_glob, traits, view_path, cycle_breakers

ORDER = ["seq", "timestamp", "uuid_ts"]
ENGINE = "streaming"


def scan(lake, table, columns):
    return pl.scan_parquet(table_glob(lake, table), hive_partitioning=False).select(columns)


def latest_sorted(lf):
    return lf.sort(ORDER, nulls_last=False, maintain_order=False)


def jump(edges):
    """Pointer jumping over node -> ptr; returns (ptrs, pending)."""
    ptrs = edges.select("node", "ptr").with_columns(hopped=pl.lit(False))
    last = None
    while True:
        other = ptrs.select(pl.col("node").alias("o_node"), pl.col("ptr").alias("o_ptr"))
        ptrs = (ptrs.select("node", "ptr")
                .join(other, left_on="ptr", right_on="o_node", how="left", coalesce=False)
                .select("node",
                        pl.coalesce("o_ptr", "ptr").alias("ptr"),
                        pl.col("o_node").is_not_null().alias("hopped")))
        pending = int(ptrs["hopped"].sum())
        if pending == 0 or pending == last:
            return ptrs, pending
        last = pending


def id_graph(lake):
    nodes = (latest_sorted(
                scan(lake, "id_graph_updates",
                     ["segment_id", "canonical_segment_id"] + ORDER)
                .filter(pl.col("segment_id").is_not_null()
                        & pl.col("canonical_segment_id").is_not_null()))
             .group_by("segment_id")
             .agg(pl.col("canonical_segment_id").last().alias("target"),
                  *[pl.col(c).last() for c in ORDER])
             .collect(engine=ENGINE))
    edges = nodes.filter(pl.col("target") != pl.col("segment_id")).select(
        pl.col("segment_id").alias("node"), pl.col("target").alias("ptr"), *ORDER)
    ptrs, stuck = jump(edges)
    breakers = []
    if stuck:
        rows = (edges.join(ptrs.filter("hopped").select("node"), on="node", how="semi")
                .select("node", "ptr", "seq", pl.col("timestamp").dt.epoch("us"),
                        pl.col("uuid_ts").dt.epoch("us")).rows())
        breakers = cycle_breakers(rows)
        ptrs, _ = jump(edges.filter(~pl.col("node").is_in(breakers)))
    return (nodes.join(ptrs.select("node", pl.col("ptr").alias("end")),
                       left_on="segment_id", right_on="node", how="left")
            .select("segment_id",
                    pl.when(pl.col("segment_id").is_in(breakers)).then(pl.col("segment_id"))
                    .otherwise(pl.coalesce("end", "target")).alias("canonical_segment_id"),
                    "timestamp"))


def external_id_mapping(lake, graph, out):
    keys = ["external_id_type", "external_id_value"]
    per_id = (latest_sorted(
                  scan(lake, "external_id_mapping_updates",
                       ["segment_id"] + keys + ["external_id_hash"] + ORDER)
                  .filter(pl.col("segment_id").is_not_null()
                          & pl.col("external_id_type").is_not_null()
                          & pl.col("external_id_value").is_not_null()))
              .group_by(keys)
              .agg(pl.col("segment_id").last().alias("sid"),
                   pl.col("external_id_hash").last(),
                   pl.col("timestamp").last())
              .join(graph.lazy().select("segment_id", "canonical_segment_id"),
                    left_on="sid", right_on="segment_id", how="left")
              .select(pl.coalesce("canonical_segment_id", "sid").alias("canonical_segment_id"),
                      *keys, "external_id_hash", "timestamp")
              .collect(engine=ENGINE))
    # Polars has no SHA-1: hash the (few) identifiers landed without one in Python.
    missing = per_id.filter(pl.col("external_id_hash").is_null())
    if missing.height:
        hashes = [hashlib.sha1((t + v).encode()).hexdigest()
                  for t, v in missing.select(keys).iter_rows()]
        fill = missing.select(keys).with_columns(h=pl.Series(hashes, dtype=pl.String))
        per_id = (per_id.join(fill, on=keys, how="left")
                  .with_columns(pl.coalesce("external_id_hash", "h").alias("external_id_hash"))
                  .drop("h"))
    per_id.write_parquet(view_path(out, "external_id_mapping"), compression="zstd")


def profile_traits(lake, graph, out):
    ts = traits(lake)
    g = graph.lazy().select("segment_id", "canonical_segment_id")
    owned = (latest_sorted(
                 scan(lake, "profile_traits_updates", ["segment_id"] + ORDER + ts)
                 .filter(pl.col("segment_id").is_not_null())
                 .join(g, on="segment_id", how="left")
                 .with_columns(pl.coalesce("canonical_segment_id", "segment_id").alias("owner")))
             .group_by("owner")
             .agg(*[pl.col(t).last(ignore_nulls=True) for t in ts]))
    sids = pl.concat([g.select(pl.col("segment_id").alias("sid")),
                      g.select(pl.col("canonical_segment_id").alias("sid"))]).unique()
    known = (sids.join(g, left_on="sid", right_on="segment_id", how="left")
             .select("sid",
                     pl.when(pl.col("canonical_segment_id") != pl.col("sid"))
                     .then(pl.col("canonical_segment_id")).alias("merged_to")))
    (known.join(owned, left_on="sid", right_on="owner", how="full", coalesce=True)
     .select(pl.col("sid").alias("canonical_segment_id"), *ts, "merged_to")
     .sink_parquet(view_path(out, "profile_traits"), compression="zstd", engine=ENGINE))


def main():
    a = parse_args(__doc__.splitlines()[0])
    # POLARS_MAX_THREADS is set by the caller (it must be set before import).
    graph = id_graph(a.lake)
    graph.write_parquet(view_path(a.out, "id_graph"), compression="zstd")
    external_id_mapping(a.lake, graph, a.out)
    profile_traits(a.lake, graph, a.out)


if __name__ == "__main__":
    main()
