"""Prepares the `psync-lake-delta` system (not timed): the benchmark lake's core
tables landed as Delta tables, as Databricks holds them. The Parquet files are
hard-linked (copied across file systems) into `--out`, then each table folder is
converted in place by the `deltalake` package (`convert_to_deltalake`, the same as
Databricks' CONVERT TO DELTA), so both systems read the very same data files.
"""

import argparse
import os
import shutil

from deltalake import convert_to_deltalake

TABLES = ("id_graph_updates", "external_id_mapping_updates", "profile_traits_updates")


def place(src, dst):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--lake", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    shutil.rmtree(a.out, ignore_errors=True)
    for table in TABLES:
        src_root = os.path.join(a.lake, table)
        dst_root = os.path.join(a.out, table)
        for folder, _, files in os.walk(src_root):
            for f in files:
                if f.endswith(".parquet"):
                    src = os.path.join(folder, f)
                    # Flat: psync-lake reads no column from Hive folder names, so the
                    # Delta table has no partition columns either.
                    flat = os.path.relpath(src, src_root).replace(os.sep, "__")
                    place(src, os.path.join(dst_root, flat))
        convert_to_deltalake(dst_root)


if __name__ == "__main__":
    main()
