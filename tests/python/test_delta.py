"""Delta Lake input (issue 14): landed tables written as Delta tables by the Python
`deltalake` package (several commits, partitioned by day, compacted by OPTIMIZE,
rows deleted), and tables carrying deletion vectors, give exactly the views of the
same live rows landed as plain Parquet; time travel, incremental runs over Delta
commits, and bad Delta input."""

import json
import os
import pathlib
import shutil
import struct
import subprocess
import uuid
import zlib

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from test_readers import ROOT, VIEWS, binary

CORE = ["id_graph_updates", "external_id_mapping_updates", "profile_traits_updates"]
CORE_VIEWS = "id_graph,external_id_mapping,profile_traits"


def psync(*args, check=True):
    p = subprocess.run([binary(), *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"psync-lake {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
    return p


def materialize(source, dest, *extra, check=True):
    return psync("materialize", "--source", str(source), "--dest", str(dest), "--views", CORE_VIEWS,
                 "--no-health", "--quiet", *extra, check=check)


def read_landed(folder: pathlib.Path) -> pa.Table:
    """Every Parquet file of a plain landed table, column names lower-cased."""
    tables = []
    for f in sorted(folder.rglob("*.parquet")):
        t = pq.read_table(f)
        tables.append(t.rename_columns([c.lower() for c in t.column_names]))
    return pa.concat_tables(tables, promote_options="permissive")


def with_day(t: pa.Table) -> pa.Table:
    """The landing day of each row, the column Segment's tables are partitioned by."""
    day = pc.cast(pc.cast(t["timestamp"], pa.timestamp("us")), pa.date32())
    return t.append_column("day", day)


def view_rows(dest: pathlib.Path, view: str):
    t = pq.read_table(dest / view)
    t = t.select(sorted(t.column_names))
    return sorted((tuple(r.values()) for r in t.to_pylist()), key=repr)


def assert_same_views(a: pathlib.Path, b: pathlib.Path):
    for view in VIEWS:
        ra, rb = view_rows(a, view), view_rows(b, view)
        assert len(ra) > 0, view
        assert ra == rb, f"{view}: {len(ra)} rows vs {len(rb)}"


def views_of_both(delta_lake, plain, base):
    """Materializes a Delta lake and its plain twin; asserts equal views; returns
    the rows per input table of the Delta run's record."""
    ours, theirs = base / "views_delta", base / "views_plain"
    materialize(delta_lake, ours)
    materialize(plain, theirs)
    assert_same_views(ours, theirs)
    record = json.loads((ours / "_psync" / "last_run.json").read_text())
    return ours, {i["table"]: i["rows"] for i in record["inputs"]}


def as_plain(delta_lake: pathlib.Path, plain: pathlib.Path, version=None):
    """The live rows of every Delta table of a lake, landed as one plain Parquet file each."""
    shutil.rmtree(plain, ignore_errors=True)
    for table in CORE:
        dt = DeltaTable(str(delta_lake / table), version=version)
        (plain / table).mkdir(parents=True)
        pq.write_table(dt.to_pyarrow_table(), plain / table / "part-0.parquet")


def land_as_delta(source: pathlib.Path, lake: pathlib.Path, commits=3):
    """Each core table of `source` landed as a Delta table in `commits` appends,
    partitioned by day."""
    for table in CORE:
        rows = with_day(read_landed(source / table))
        step = -(-rows.num_rows // commits)
        for i in range(commits):
            part = rows.slice(i * step, step)
            write_deltalake(str(lake / table), part, mode="append", partition_by=["day"])


def parquet_files_on_disk(table: pathlib.Path) -> int:
    return sum(1 for _ in table.rglob("*.parquet") if "_delta_log" not in str(_))


@pytest.fixture(scope="module", params=["sample", "generated"])
def landed(request, tmp_path_factory):
    base = tmp_path_factory.mktemp(f"delta_{request.param}")
    if request.param == "sample":
        source = ROOT / "data" / "sample"
    else:
        source = base / "generated"
        psync("generate", "--dest", str(source), "--profiles", "1500", "--traits", "6", "--seed", "11",
              "--rows-per-file", "700", "--no-events", "--drop-recursive", "0.3")
    return base, source


def some_segment_ids(lake: pathlib.Path, n: int):
    t = DeltaTable(str(lake / "profile_traits_updates")).to_pyarrow_table(columns=["segment_id"])
    ids = sorted(set(t["segment_id"].to_pylist()))
    return ids[:: max(1, len(ids) // n)][:n]


def test_delta_tables_read_only_their_live_rows(landed):
    base, source = landed
    lake = base / "delta"
    land_as_delta(source, lake)
    # OPTIMIZE leaves the compacted files on storage: a reader of *.parquet would
    # read their rows twice.
    for table in CORE:
        dt = DeltaTable(str(lake / table))
        dt.optimize.compact()
        assert parquet_files_on_disk(lake / table) > len(DeltaTable(str(lake / table)).file_uris())
    # Hard deletes (Profile Sync Deletions): whole profiles gone from every table.
    gone = some_segment_ids(lake, 5)
    in_list = ", ".join(f"'{s}'" for s in gone)
    for table in CORE:
        DeltaTable(str(lake / table)).delete(f"segment_id IN ({in_list})")

    plain = base / "plain"
    as_plain(lake, plain)
    ours, rows = views_of_both(lake, plain, base)
    theirs = base / "views_plain"
    for table in CORE:
        assert rows[table] == DeltaTable(str(lake / table)).to_pyarrow_table().num_rows
    traits = pq.read_table(ours / "profile_traits")
    assert "day" in traits.column_names, "a partition column is a column of its table"
    graph = pq.read_table(ours / "id_graph")
    assert not set(gone) & set(graph["segment_id"].to_pylist())

    # Time travel: the lake as its first two commits left it.
    at1 = base / "views_v1"
    materialize(lake, at1, "--source-version", "1")
    as_plain(lake, plain, version=1)
    materialize(plain, theirs)
    assert_same_views(at1, theirs)

    p = materialize(lake, base / "views_v99", "--source-version", "99", check=False)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "Delta table" in lines[0] and "version 99" in lines[0], lines[0]
    assert not (base / "views_v99" / "id_graph").exists()


# ---- deletion vectors: a fixture written to the Delta protocol's DV format ----

Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
ROARING_PORTABLE_MAGIC = 1681511377
SERIAL_COOKIE_NO_RUNCONTAINER = 12346


def z85(data: bytes) -> str:
    assert len(data) % 4 == 0
    out = []
    for i in range(0, len(data), 4):
        v = int.from_bytes(data[i:i + 4], "big")
        chunk = []
        for _ in range(5):
            v, r = divmod(v, 85)
            chunk.append(Z85[r])
        out.extend(reversed(chunk))
    return "".join(out)


def roaring_treemap(rows) -> bytes:
    """RoaringTreemap portable serialization of `rows` (array containers only)."""
    rows = sorted(set(rows))
    by_high = {}
    for r in rows:
        by_high.setdefault(r >> 32, []).append(r & 0xFFFFFFFF)
    out = struct.pack("<Q", len(by_high))
    for high, lows in sorted(by_high.items()):
        containers = {}
        for low in lows:
            containers.setdefault(low >> 16, []).append(low & 0xFFFF)
        assert all(len(v) <= 4096 for v in containers.values())
        keys = sorted(containers)
        bitmap = struct.pack("<II", SERIAL_COOKIE_NO_RUNCONTAINER, len(keys))
        for k in keys:
            bitmap += struct.pack("<HH", k, len(containers[k]) - 1)
        offset = len(bitmap) + 4 * len(keys)
        for k in keys:
            bitmap += struct.pack("<I", offset)
            offset += 2 * len(containers[k])
        for k in keys:
            bitmap += b"".join(struct.pack("<H", v) for v in containers[k])
        out += struct.pack("<I", high) + bitmap
    return out


def add_deletion_vector(table: pathlib.Path, deleted_by_file: dict):
    """Commits deletion vectors on some files of a Delta table (protocol 3/7,
    feature deletionVectors), each stored in its own `deletion_vector_<uuid>.bin`."""
    dt = DeltaTable(str(table))
    version = dt.version()
    log = table / "_delta_log"
    metadata = None
    for v in range(version + 1):
        for line in (log / f"{v:020d}.json").read_text().splitlines():
            action = json.loads(line)
            if "metaData" in action:
                metadata = action["metaData"]
    metadata.setdefault("configuration", {})["delta.enableDeletionVectors"] = "true"
    adds = {a["path"]: a for a in add_actions(dt)}
    actions = [
        {"protocol": {"minReaderVersion": 3, "minWriterVersion": 7,
                      "readerFeatures": ["deletionVectors"], "writerFeatures": ["deletionVectors"]}},
        {"metaData": metadata},
    ]
    for path, rows in deleted_by_file.items():
        add = adds[path]
        data = struct.pack("<I", ROARING_PORTABLE_MAGIC) + roaring_treemap(rows)
        dv_id = uuid.uuid4()
        blob = b"\x01" + struct.pack(">I", len(data)) + data + struct.pack(">I", zlib.crc32(data))
        (table / f"deletion_vector_{dv_id}.bin").write_bytes(blob)
        partition = {k: (None if v is None else str(v)) for k, v in (add.get("partition") or {}).items()}
        actions.append({"remove": {"path": path, "deletionTimestamp": 1, "dataChange": True,
                                   "extendedFileMetadata": True, "partitionValues": partition,
                                   "size": add["size_bytes"]}})
        actions.append({"add": {"path": path, "partitionValues": partition, "size": add["size_bytes"],
                                "modificationTime": add["modification_time"], "dataChange": True,
                                "deletionVector": {"storageType": "u", "pathOrInlineDv": z85(dv_id.bytes),
                                                   "offset": 1, "sizeInBytes": len(data),
                                                   "cardinality": len(set(rows))}}})
    (log / f"{version + 1:020d}.json").write_text("\n".join(json.dumps(a) for a in actions) + "\n")


def add_actions(dt: DeltaTable):
    return pa.table(dt.get_add_actions(flatten=False)).to_pylist()


def live_rows_without(table: pathlib.Path, deleted_by_file: dict) -> pa.Table:
    """The rows of a Delta table (read before its deletion vectors) minus the deleted ones."""
    dt = DeltaTable(str(table))
    parts = []
    for add in add_actions(dt):
        t = pq.read_table(table / add["path"])
        for k, v in (add.get("partition") or {}).items():
            t = t.append_column(k, pa.array([v] * t.num_rows))
        deleted = set(deleted_by_file.get(add["path"], []))
        keep = [i for i in range(t.num_rows) if i not in deleted]
        parts.append(t.take(pa.array(keep, type=pa.int64())))
    return pa.concat_tables(parts)


def test_deletion_vectors_remove_their_rows(tmp_path):
    lake = tmp_path / "delta"
    land_as_delta(ROOT / "data" / "sample", lake, commits=2)
    deleted = {}
    for table in ("id_graph_updates", "profile_traits_updates"):
        dt = DeltaTable(str(lake / table))
        files = sorted(a["path"] for a in add_actions(dt))
        rows = pq.read_metadata(lake / table / files[0]).num_rows
        deleted[table] = {files[0]: list(range(0, rows, 3)), files[-1]: [0]}
    plain = tmp_path / "plain"
    for table in CORE:
        t = live_rows_without(lake / table, deleted.get(table, {}))
        (plain / table).mkdir(parents=True)
        # The partition column as the Delta reader types it.
        t = t.set_column(t.schema.get_field_index("day"), "day", pc.cast(t["day"], pa.date32()))
        pq.write_table(t, plain / table / "part-0.parquet")
    for table, by_file in deleted.items():
        add_deletion_vector(lake / table, by_file)

    _, rows = views_of_both(lake, plain, tmp_path)
    for table in CORE:
        assert rows[table] == pq.read_metadata(plain / table / "part-0.parquet").num_rows, table

    # The shell reads the same live rows.
    p = psync("query", "--source", str(lake), "--format", "json", "-c",
              "SELECT count(*) AS n FROM id_graph_updates")
    assert json.loads(p.stdout)[0]["n"] == rows["id_graph_updates"]


# ---- incremental runs over Delta commits ----

def test_incremental_over_delta_commits_equals_a_full_run(tmp_path):
    source = tmp_path / "generated"
    psync("generate", "--dest", str(source), "--profiles", "1200", "--traits", "5", "--seed", "3",
          "--rows-per-file", "400", "--no-events")
    batches = {t: with_day(read_landed(source / t)) for t in CORE}
    lake, dest, full = tmp_path / "delta", tmp_path / "views_inc", tmp_path / "views_full"

    def append(lo, hi):
        for t, rows in batches.items():
            n = rows.num_rows
            write_deltalake(str(lake / t), rows.slice(int(n * lo), int(n * hi) - int(n * lo)), mode="append",
                            partition_by=["day"])

    def check(step):
        p = materialize(lake, dest, "--mode", "incremental")
        shutil.rmtree(full, ignore_errors=True)
        materialize(lake, full)
        assert_same_views(dest, full)
        state = json.loads((dest / "_psync" / "state" / "manifest.json").read_text())
        for t in CORE:
            assert state["delta_versions"][t] == DeltaTable(str(lake / t)).version(), (step, t)
        return p

    append(0.0, 0.4)
    check("first")
    append(0.4, 0.7)
    check("append")
    gone = some_segment_ids(lake, 4)
    in_list = ", ".join(f"'{s}'" for s in gone)
    for t in CORE:
        DeltaTable(str(lake / t)).delete(f"segment_id IN ({in_list})")
    check("delete")
    for t in CORE:
        DeltaTable(str(lake / t)).optimize.compact()
    check("optimize")
    append(0.7, 1.0)
    check("append after optimize")
    # Nothing committed since: nothing to do.
    p = materialize(lake, dest, "--mode", "incremental")
    assert p.returncode == 0


# ---- bad Delta input: one line naming the table, nothing published ----

def broken_lake(tmp_path, how):
    lake = tmp_path / how
    land_as_delta(ROOT / "data" / "sample", lake, commits=3)
    table = lake / "profile_traits_updates"
    log = table / "_delta_log"
    if how == "missing_commit":
        (log / f"{1:020d}.json").unlink()
    elif how == "corrupt_checkpoint":
        DeltaTable(str(table)).create_checkpoint()
        [cp] = list(log.glob("*.checkpoint.parquet"))
        cp.write_bytes(b"PAR1 this is not a checkpoint PAR1")
    elif how == "unsupported_feature":
        v = DeltaTable(str(table)).version() + 1
        (log / f"{v:020d}.json").write_text(json.dumps({"protocol": {
            "minReaderVersion": 3, "minWriterVersion": 7,
            "readerFeatures": ["fancyFutureFeature"], "writerFeatures": ["fancyFutureFeature"]}}) + "\n")
    elif how == "column_mapping_id":
        column_map(table, "id")
    return lake


def column_map(table: pathlib.Path, mode: str):
    """Rewrites a Delta table as a column-mapped one (as Databricks makes them): every
    data file rewritten with physical column names `col-<n>`, one commit that removes
    the old files, adds the new ones and sets `delta.columnMapping.mode`."""
    dt = DeltaTable(str(table))
    log = table / "_delta_log"
    v = dt.version()
    meta = None
    for line in (log / f"{0:020d}.json").read_text().splitlines():
        if "metaData" in json.loads(line):
            meta = json.loads(line)["metaData"]
    schema = json.loads(meta["schemaString"])
    physical = {}
    for i, field in enumerate(schema["fields"], start=1):
        physical[field["name"]] = f"col-{i:04d}-{field['name'][::-1]}"
        field["metadata"] = {"delta.columnMapping.id": i,
                             "delta.columnMapping.physicalName": physical[field["name"]]}
    meta["schemaString"] = json.dumps(schema)
    meta.setdefault("configuration", {})["delta.columnMapping.mode"] = mode
    meta["configuration"]["delta.columnMapping.maxColumnId"] = str(len(schema["fields"]))
    partition_cols = meta.get("partitionColumns", [])
    actions = [{"protocol": {"minReaderVersion": 2, "minWriterVersion": 5}}, {"metaData": meta}]
    for i, add in enumerate(add_actions(dt)):
        t = pq.read_table(table / add["path"])
        t = t.rename_columns([physical.get(c, c) for c in t.column_names])
        name = f"mapped-{i}.parquet"
        pq.write_table(t, table / name)
        values = {physical[k]: (None if v is None else str(v)) for k, v in (add.get("partition") or {}).items()}
        actions.append({"remove": {"path": add["path"], "deletionTimestamp": 1, "dataChange": True}})
        actions.append({"add": {"path": name, "partitionValues": values, "size": (table / name).stat().st_size,
                                "modificationTime": 1, "dataChange": True}})
    assert all(c in physical for c in partition_cols)
    (log / f"{v + 1:020d}.json").write_text("\n".join(json.dumps(a) for a in actions) + "\n")


def test_column_mapping_name_mode_reads_the_logs_names(tmp_path):
    lake = tmp_path / "delta"
    land_as_delta(ROOT / "data" / "sample", lake, commits=2)
    before = tmp_path / "views_before"
    materialize(lake, before)
    for table in CORE:
        column_map(lake / table, "name")
    assert "segment_id" not in pq.read_schema(next((lake / "id_graph_updates").glob("mapped-*.parquet"))).names
    after = tmp_path / "views_after"
    materialize(lake, after)
    assert_same_views(before, after)


@pytest.mark.parametrize("how,words", [
    ("missing_commit", ["profile_traits_updates", "Delta table"]),
    ("corrupt_checkpoint", ["profile_traits_updates", "Delta table"]),
    ("unsupported_feature", ["profile_traits_updates", "fancyFutureFeature"]),
    ("column_mapping_id", ["profile_traits_updates", "column mapping mode 'id'"]),
])
def test_bad_delta_input_is_one_line(tmp_path, how, words):
    lake = broken_lake(tmp_path, how)
    dest = tmp_path / "views"
    p = materialize(lake, dest, check=False)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    for w in words:
        assert w.lower() in lines[0].lower(), lines[0]
    assert "panicked" not in p.stderr
    assert not (dest / "profile_traits").exists()


# ---- Delta tables on S3 (the moto server .ci/run starts) ----

def test_delta_tables_on_s3(tmp_path):
    from test_crash import s3_env

    env, _ = s3_env()
    endpoint = env["AWS_ENDPOINT_URL"]
    storage = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
               "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true", "AWS_S3_ALLOW_UNSAFE_RENAME": "true"}
    root = f"s3://psync-test/delta-{uuid.uuid4().hex[:8]}"
    local = tmp_path / "local"
    land_as_delta(ROOT / "data" / "sample", local, commits=2)
    for table in CORE:
        rows = DeltaTable(str(local / table)).to_pyarrow_table()
        half = rows.num_rows // 2
        write_deltalake(f"{root}/{table}", rows.slice(0, half), mode="append", partition_by=["day"],
                        storage_options=storage)
        write_deltalake(f"{root}/{table}", rows.slice(half), mode="append", partition_by=["day"],
                        storage_options=storage)
        DeltaTable(f"{root}/{table}", storage_options=storage).delete("seq % 7 = 0")
        DeltaTable(str(local / table)).delete("seq % 7 = 0")
    ours, theirs = tmp_path / "views_s3", tmp_path / "views_local"
    p = subprocess.run([binary(), "materialize", "--source", root, "--dest", str(ours), "--views", CORE_VIEWS,
                        "--no-health", "--quiet"], env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    materialize(local, theirs)
    assert_same_views(ours, theirs)
