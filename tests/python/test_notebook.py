"""examples/notebook.ipynb runs top to bottom in a real kernel (nbclient): a cell
error fails the test, and its outputs are what the notebook promises."""

import ast
import os

import nbformat
import pyarrow.parquet as pq
from nbclient import NotebookClient

from test_readers import ROOT

NOTEBOOK = ROOT / "examples" / "notebook.ipynb"


def text_of(cell) -> str:
    out = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            out.append(o["text"])
        elif "data" in o and "text/plain" in o["data"]:
            out.append(o["data"]["text/plain"])
    return "".join(out)


def test_the_notebook_runs_and_shows_what_it_says(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    os.environ["PSYNC_NOTEBOOK_DIR"] = str(tmp_path)
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        del os.environ["PSYNC_NOTEBOOK_DIR"]
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not any(o.get("output_type") == "error" for o in c.outputs) for c in code)

    # The lake and the views are where the notebook said, and the run record's row
    # counts are those of the files it wrote.
    assert (tmp_path / "lake" / "id_graph_updates").is_dir()
    rows = ast.literal_eval(text_of(code[2]))  # view -> rows
    assert set(rows) == {"id_graph", "external_id_mapping", "profile_traits"}
    for view, n in rows.items():
        assert sum(pq.read_metadata(p).num_rows for p in (tmp_path / "views" / view).glob("*.parquet")) == n
    assert rows["id_graph"] > 0

    # The merge count printed equals the view's.
    first = text_of(code[3]).splitlines()[0]
    ids = pq.read_table(tmp_path / "views" / "id_graph").to_pylist()
    merged = sum(r["segment_id"] != r["canonical_segment_id"] for r in ids)
    assert first == f"{len(ids)} segment_ids, {merged} merged into another profile"

    # The plot has one point per day with a merge, counted here from the landed table.
    updates = pq.read_table(tmp_path / "lake" / "id_graph_updates").to_pylist()
    days = {r["timestamp"].date() for r in updates if r["segment_id"] != r["canonical_segment_id"]}
    assert days
    assert text_of(code[-1]).strip() == f"{len(days)} days plotted"
    assert (tmp_path / "merges_per_day.png").stat().st_size > 1000
