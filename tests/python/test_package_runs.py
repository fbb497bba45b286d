"""`Lake.materialize`, `verify` and `explain` against the CLI's commands: the same
files and run record, the same comparison, the same person; and the package on
S3 (the moto server of .ci/run)."""

import json
import os
import pathlib
import re
import shutil
import subprocess
import uuid

import pyarrow.parquet as pq
import pytest

import psync_lake as ps
from test_readers import ROOT, binary

SAMPLE = ROOT / "data" / "sample"
RUN_ID = re.compile(r"\d{8}T\d{6}\.\d+Z-\d+-\d+")


def files(dest: pathlib.Path):
    """Every file under dest, run ids masked."""
    return sorted(RUN_ID.sub("<id>", str(p.relative_to(dest))) for p in dest.rglob("*") if p.is_file())


def view_tables(dest: pathlib.Path):
    return {p.parent.name: pq.read_table(p) for p in dest.glob("*/*.parquet")}


def stable(record: dict, dest: pathlib.Path):
    """A run record without what differs between two runs: ids, times, the destination."""
    drop = {"run_id", "started_at", "seconds", "e_tag", "last_modified", "dest"}

    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k not in drop}
        if isinstance(v, list):
            return [strip(x) for x in v]
        if isinstance(v, str):
            return v.replace(str(dest), "<dest>")
        return v

    return strip(record)


def test_materialize_writes_what_the_cli_writes(tmp_path):
    ours, theirs = tmp_path / "py", tmp_path / "cli"
    report = ps.Lake(str(SAMPLE), dest=str(ours)).materialize(views=["id_graph", "profile_traits"])
    p = subprocess.run([binary(), "materialize", "--source", str(SAMPLE), "--dest", str(theirs),
                        "--views", "id_graph,profile_traits", "--json", "--quiet"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert files(ours) == files(theirs)
    assert [v["view"] for v in report["views"]] == ["id_graph", "profile_traits"]
    a, b = view_tables(ours), view_tables(theirs)
    assert sorted(a) == ["id_graph", "profile_traits"]
    for view in a:
        assert a[view].equals(b[view]), view
    # The dict is the run record the CLI prints and saves.
    assert stable(report, ours) == stable(json.loads(p.stdout), theirs)
    assert report["run_id"] == json.loads((ours / "_psync" / "last_run.json").read_text())["run_id"]


def test_after_materialize_queries_read_the_published_views(tmp_path):
    lake = ps.Lake(str(SAMPLE), dest=str(tmp_path / "views"))
    origin = {t["name"]: t["origin"] for t in lake.tables()}
    assert origin["id_graph"] == "view (on demand)"
    on_demand = lake.sql("SELECT count(*) AS n FROM id_graph").to_arrow()
    lake.materialize(views="id_graph", no_health=True)
    origin = {t["name"]: t["origin"] for t in lake.tables()}
    assert origin["id_graph"] == "view (published)"
    assert lake.sql("SELECT count(*) AS n FROM id_graph").to_arrow().equals(on_demand)


def test_incremental_with_nothing_new_says_so(tmp_path):
    lake = ps.Lake(str(SAMPLE), dest=str(tmp_path / "views"))
    assert lake.materialize(mode="incremental")["mode"] != "nothing-new"
    assert lake.materialize(mode="incremental")["mode"] == "nothing-new"


def test_explain_plans_without_running(tmp_path):
    text = ps.Lake(str(SAMPLE), dest=str(tmp_path / "v")).materialize(views=["id_graph"], explain=True)
    assert isinstance(text, str) and "id_graph" in text
    assert not (tmp_path / "v").exists()


def test_a_bad_view_is_the_clis_message(tmp_path):
    with pytest.raises(ps.ConfigError) as e:
        ps.Lake(str(SAMPLE), dest=str(tmp_path / "v")).materialize(views=["id_grpah"])
    p = subprocess.run([binary(), "materialize", "--source", str(SAMPLE), "--dest", str(tmp_path / "v"),
                        "--views", "id_grpah"], capture_output=True, text=True)
    assert str(e.value) in p.stderr


def test_verify_agrees_with_the_cli(tmp_path):
    dest = tmp_path / "views"
    lake = ps.Lake(str(SAMPLE), dest=str(dest))
    lake.materialize(views=["id_graph", "external_id_mapping", "profile_traits"], no_health=True)
    checks = lake.verify(views=["id_graph", "profile_traits"])
    assert [c["view"] for c in checks] == ["id_graph", "profile_traits"]
    assert all(c["ok"] for c in checks)
    p = subprocess.run([binary(), "verify", "--source", str(SAMPLE), "--dest", str(dest), "--json",
                        "--views", "id_graph,profile_traits"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert [{k: v for k, v in c.items() if k != "ok"} for c in checks] == json.loads(p.stdout)
    # A published view changed behind its back: verify says it differs.
    f = next((dest / "id_graph").glob("*.parquet"))
    t = pq.read_table(f)
    pq.write_table(t.slice(1), f)
    assert not lake.verify(views=["id_graph"])[0]["ok"]


def test_explain_is_the_clis_json():
    lake = ps.Lake(str(SAMPLE))
    person = lake.explain("sid_000000b4")
    p = subprocess.run([binary(), "explain", "--source", str(SAMPLE), "--json", "sid_000000b4"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert person == json.loads(p.stdout)
    assert person["segment_id"] == "sid_000000b4"
    with pytest.raises(ps.UnknownIdError) as e:
        lake.explain("sid_nobody")
    p = subprocess.run([binary(), "explain", "--source", str(SAMPLE), "sid_nobody"], capture_output=True, text=True)
    assert p.returncode == 1
    assert p.stderr.strip() == f"error: {e.value}"


def test_on_s3(tmp_path):
    from test_crash import s3_env

    env, _ = s3_env()
    endpoint = env["AWS_ENDPOINT_URL"]
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        os.environ.setdefault(k, env[k])
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    prefix = f"py-{uuid.uuid4().hex[:8]}"
    for f in SAMPLE.rglob("*"):
        if f.is_file():
            s3.upload_file(str(f), "psync-test", f"{prefix}/lake/{f.relative_to(SAMPLE)}")
    options = dict(s3_endpoint=endpoint, s3_allow_http=True, s3_region="us-east-1")
    lake = ps.Lake(f"s3://psync-test/{prefix}/lake", dest=f"s3://psync-test/{prefix}/views", **options)
    report = lake.materialize(views=["id_graph", "profile_traits"], no_health=True)
    local = ps.Lake(str(SAMPLE)).sql("SELECT * FROM profile_traits ORDER BY canonical_segment_id").to_arrow()
    remote = lake.sql("SELECT * FROM profile_traits ORDER BY canonical_segment_id").to_arrow()
    assert {t["name"]: t["origin"] for t in lake.tables()}["profile_traits"] == "view (published)"
    assert remote.equals(local)
    assert {v["view"]: v["rows"] for v in report["views"]}["profile_traits"] == local.num_rows
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="psync-test", Prefix=f"{prefix}/views/")["Contents"]]
    assert f"{prefix}/views/id_graph/id_graph.parquet" in keys
    # An empty prefix is a lake with no tables, said as the CLI says it.
    with pytest.raises(ps.QueryError, match="this lake has no table 'id_graph_updates'"):
        ps.Lake(f"s3://psync-test/{prefix}/nothing-here", **options).sql("SELECT * FROM id_graph_updates")
