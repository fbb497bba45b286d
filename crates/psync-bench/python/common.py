"""Shared helpers of the benchmark scripts: the lake's layout, the trait columns,
and the merge-cycle breaking of SPEC §3.1 (the rare slow path, done in Python).

Every script reads the lake written by `psync-lake generate` and writes the three
views as `<out>/<view>/<view>.parquet`, the layout `psync-lake materialize` publishes.
"""

import argparse
import glob
import os

import pyarrow.parquet as pq

VIEWS = ("id_graph", "external_id_mapping", "profile_traits")

# SPEC §2: columns of profile_traits_updates that are never traits
# (besides context_* and _*).
NOT_TRAITS = {
    "segment_id", "canonical_segment_id", "merged_to", "id", "user_id",
    "anonymous_id", "seq", "timestamp", "uuid_ts", "received_at", "sent_at",
    "original_timestamp", "event_source_id",
}


def is_trait(name):
    n = name.lower()
    return n not in NOT_TRAITS and not n.startswith("context_") and not n.startswith("_")


def parse_args(description, extra=None):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--lake", required=True, help="lake root (one folder per landed table)")
    p.add_argument("--out", required=True, help="destination: <out>/<view>/<view>.parquet")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    if extra:
        extra(p)
    a = p.parse_args()
    for v in VIEWS:
        os.makedirs(os.path.join(a.out, v), exist_ok=True)
    return a


def table_glob(lake, table):
    """The glob of a landed table's Parquet files (generate writes day=... folders)."""
    return os.path.join(lake, table, "**", "*.parquet")


def table_files(lake, table):
    files = []
    for f in sorted(glob.glob(table_glob(lake, table), recursive=True)):
        rel = os.path.relpath(f, os.path.join(lake, table))
        if any(part.startswith(("_", ".")) for part in rel.split(os.sep)):
            continue
        files.append(f)
    return files


def traits(lake):
    """The trait columns of profile_traits_updates, in landed order (union over files)."""
    seen, out = set(), []
    for f in table_files(lake, "profile_traits_updates"):
        for name in pq.read_schema(f).names:
            if is_trait(name) and name.lower() not in seen:
                seen.add(name.lower())
                out.append(name)
    return out


def view_path(out, view):
    return os.path.join(out, view, view + ".parquet")


def _older_first(row):
    """Sort key of an edge (node, ptr, seq, timestamp, uuid_ts): oldest first, NULL lowest."""
    node, _ptr, seq, ts, uuid_ts = row
    return tuple((v is not None, v) for v in (seq, ts, uuid_ts, node))


def cycle_breakers(stuck_edges):
    """Given the edges (node, ptr, seq, timestamp, uuid_ts) of every node that pointer
    jumping could not resolve (nodes on a cycle and nodes leading into one), returns
    the node of each cycle whose edge is the oldest (SPEC §3.1: break it there)."""
    by_node = {row[0]: row for row in stuck_edges}
    done, breakers = set(), []
    for start in by_node:
        path, pos, n = [], {}, start
        while n in by_node and n not in done and n not in pos:
            pos[n] = len(path)
            path.append(n)
            n = by_node[n][1]
        if n in pos:  # a new cycle: path[pos[n]:]
            cycle = [by_node[m] for m in path[pos[n]:]]
            breakers.append(min(cycle, key=_older_first)[0])
        done.update(path)
    return breakers
