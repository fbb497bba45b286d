"""Compares the views of a benchmarked system with psync-lake's (the reference):
same columns (by name, case-insensitive) and the same rows, order-insensitive,
duplicates counted (EXCEPT ALL both ways, in DuckDB). Timestamps are compared as
UTC instants; the candidate's other columns are cast to the reference's types.

Prints one JSON object: {view: {rows_equal, ref_rows, got_rows, missing, extra,
error, missing_sample, extra_sample}}; `missing` are reference rows the candidate
lacks, `extra` candidate rows the reference lacks.
"""

import argparse
import json
import os

import duckdb

from common import VIEWS

SAMPLE = 5


def q(name):
    return '"' + name.replace('"', '""') + '"'


def compare_view(con, ref_dir, got_dir, view):
    ref = f"read_parquet('{os.path.join(ref_dir, view, '*.parquet')}')"
    got = f"read_parquet('{os.path.join(got_dir, view, '*.parquet')}')"
    r = {"rows_equal": False}
    try:
        ref_cols = con.execute(f"DESCRIBE SELECT * FROM {ref}").fetchall()
        got_cols = {c[0].lower(): c for c in con.execute(f"DESCRIBE SELECT * FROM {got}").fetchall()}
    except duckdb.Error as e:
        r["error"] = str(e).splitlines()[0]
        return r
    ref_names = {c[0].lower() for c in ref_cols}
    lacking = [c[0] for c in ref_cols if c[0].lower() not in got_cols]
    surplus = [c[0] for c in got_cols.values() if c[0].lower() not in ref_names]
    if lacking or surplus:
        r["error"] = f"columns differ: lacking {lacking}, surplus {surplus}"
        return r
    ref_sel, got_sel = [], []
    for name, typ, *_ in ref_cols:
        g = q(got_cols[name.lower()][0])
        if typ.startswith("TIMESTAMP"):
            ref_sel.append(f"CAST({q(name)} AS TIMESTAMPTZ) AS {q(name)}")
            got_sel.append(f"CAST({g} AS TIMESTAMPTZ) AS {q(name)}")
        else:
            ref_sel.append(q(name))
            got_sel.append(f"CAST({g} AS {typ}) AS {q(name)}")
    a = f"SELECT {', '.join(ref_sel)} FROM {ref}"
    b = f"SELECT {', '.join(got_sel)} FROM {got}"
    key = q(ref_cols[0][0])
    try:
        r["ref_rows"] = con.execute(f"SELECT count(*) FROM {ref}").fetchone()[0]
        r["got_rows"] = con.execute(f"SELECT count(*) FROM {got}").fetchone()[0]
        con.execute(f"CREATE OR REPLACE TEMP TABLE missing AS {a} EXCEPT ALL {b}")
        con.execute(f"CREATE OR REPLACE TEMP TABLE extra AS {b} EXCEPT ALL {a}")
    except duckdb.Error as e:
        r["error"] = str(e).splitlines()[0]
        return r
    r["missing"] = con.execute("SELECT count(*) FROM missing").fetchone()[0]
    r["extra"] = con.execute("SELECT count(*) FROM extra").fetchone()[0]
    r["rows_equal"] = r["missing"] == 0 and r["extra"] == 0 and r["ref_rows"] == r["got_rows"]
    if not r["rows_equal"]:
        for t in ("missing", "extra"):
            text = ", ".join(f"CAST({q(c[0])} AS VARCHAR)" for c in ref_cols)
            rows = con.execute(f"SELECT {text} FROM {t} ORDER BY {key} LIMIT {SAMPLE}").fetchall()
            r[t + "_sample"] = [list(row) for row in rows]
        r["columns"] = [c[0] for c in ref_cols]
    return r


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ref", required=True, help="psync-lake's destination")
    p.add_argument("--got", required=True, help="the candidate's destination")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    a = p.parse_args()
    con = duckdb.connect()
    con.execute(f"SET threads = {a.threads}")
    con.execute("SET TimeZone = 'UTC'")
    print(json.dumps({v: compare_view(con, a.ref, a.got, v) for v in VIEWS}))


if __name__ == "__main__":
    main()
