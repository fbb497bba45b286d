"""The property "an incremental run equals a full run after every landing batch",
over Delta tables (issue 14): Hypothesis draws a history of commits — appends,
Profile Sync hard deletes (deltalake's copy-on-write DELETE), OPTIMIZE compactions,
and deletion vectors on live files — and after each commit an incremental run
over the commits since the last run must publish exactly the views of a full run,
and the manifest must record each table's new version."""

import json
import pathlib
import shutil
import tempfile

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_delta import (CORE, add_actions, add_deletion_vector, assert_same_views, materialize, psync,
                        read_landed, with_day)

CHUNKS = 8


@pytest.fixture(scope="module")
def chunks(tmp_path_factory):
    """A generated lake with merge chains and missing recursive entries, each core
    table cut into CHUNKS landing batches."""
    source = tmp_path_factory.mktemp("delta_props") / "generated"
    psync("generate", "--dest", str(source), "--profiles", "500", "--traits", "4", "--seed", "5",
          "--rows-per-file", "250", "--no-events", "--drop-recursive", "0.3")
    out = {}
    for t in CORE:
        rows = with_day(read_landed(source / t))
        step = -(-rows.num_rows // CHUNKS)
        out[t] = [rows.slice(i * step, step) for i in range(CHUNKS)]
    return out


# Commits deltalake writes (append / delete / optimize), then commits of deletion
# vectors: after the first deletion vector the table needs the deletionVectors
# writer feature, which deltalake's writer does not support, so none follow it.
WRITES = st.one_of(
    st.tuples(st.just("append"), st.integers(1, 3)),
    st.tuples(st.just("delete"), st.integers(1, 5)),
    st.tuples(st.just("optimize"), st.just(0)),
)
DELETION_VECTORS = st.tuples(st.just("deletion_vector"), st.integers(1, 4))
HISTORIES = st.tuples(st.lists(WRITES, min_size=1, max_size=4), st.lists(DELETION_VECTORS, max_size=2))


class Lake:
    """A Delta lake being landed, batch by batch."""

    def __init__(self, root: pathlib.Path, chunks):
        self.root, self.chunks, self.landed = root, chunks, 0
        self.with_dv = {t: set() for t in CORE}

    def append(self, n: int) -> bool:
        if self.landed >= CHUNKS:
            return False
        for t in CORE:
            part = pa.concat_tables(self.chunks[t][self.landed:self.landed + n])
            write_deltalake(str(self.root / t), part, mode="append", partition_by=["day"])
        self.landed = min(CHUNKS, self.landed + n)
        return True

    def delete(self, n: int) -> bool:
        ids = DeltaTable(str(self.root / "profile_traits_updates")).to_pyarrow_table(columns=["segment_id"])
        ids = sorted(set(ids["segment_id"].to_pylist()))
        gone = ids[n::max(1, len(ids) // n)][:n]
        if not gone:
            return False
        in_list = ", ".join(f"'{s}'" for s in gone)
        for t in CORE:
            DeltaTable(str(self.root / t)).delete(f"segment_id IN ({in_list})")
        return True

    def optimize(self, _: int) -> bool:
        for t in CORE:
            DeltaTable(str(self.root / t)).optimize.compact()
        return True

    def deletion_vector(self, step: int) -> bool:
        """Deletes every `step+1`-th row (from row `step-1`) of one live file per
        table that has no deletion vector yet."""
        done = False
        for t in CORE:
            table = self.root / t
            for add in sorted(add_actions(DeltaTable(str(table))), key=lambda a: a["path"]):
                if add["path"] in self.with_dv[t] or add["num_records"] <= step:
                    continue
                add_deletion_vector(table, {add["path"]: list(range(step - 1, add["num_records"], step + 1))})
                self.with_dv[t].add(add["path"])
                done = True
                break
        return done


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=HISTORIES)
def test_incremental_equals_full_after_every_delta_commit(chunks, history):
    writes, vectors = history
    with tempfile.TemporaryDirectory(prefix="psync-delta-props-") as tmp:
        tmp = pathlib.Path(tmp)
        lake, dest, full = Lake(tmp / "lake", chunks), tmp / "views", tmp / "full"
        lake.append(2)
        for step, (op, arg) in enumerate([("first", 0), *writes, *vectors]):
            if op != "first" and not getattr(lake, op)(arg):
                continue
            materialize(lake.root, dest, "--mode", "incremental")
            shutil.rmtree(full, ignore_errors=True)
            materialize(lake.root, full)
            assert_same_views(dest, full)
            state = json.loads((dest / "_psync" / "state" / "manifest.json").read_text())
            for t in CORE:
                assert state["delta_versions"][t] == DeltaTable(str(lake.root / t)).version(), (step, op, t)
