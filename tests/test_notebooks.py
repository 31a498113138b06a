"""The example notebooks: committed executed, with small deterministic outputs, and each runs top to
bottom in quick mode (CI re-executes them and fails on the first cell that raises).

``examples/notebooks/execute.py`` runs them and writes them back; these tests use its functions:
each notebook is executed with nbclient in a ``python3`` kernel (jupyter_client replaces the
kernelspec's ``python`` by this interpreter, so the kernel sees this environment), with
``MSM_NOTEBOOK_QUICK=1`` and one torch thread, its working directory and the demo's output folder
in a pytest temporary directory. The teacher is exact (no training, no cache).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "examples" / "notebooks"
NOTEBOOKS = ["01_quickstart.ipynb", "02_motion_score_explained.ipynb", "03_dmd_vs_msm.ipynb"]

_spec = importlib.util.spec_from_file_location("execute_notebooks", NOTEBOOK_DIR / "execute.py")
execute_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(execute_notebooks)


# What each notebook must print (regular expressions over its text outputs), beyond running clean.
EXPECTED = {
    "01_quickstart.ipynb": [
        r"teacher: exact posterior mean of \d+ data videos",
        r"plain DMD: \d+ generator steps",
        r"\bdmd_loss +-?\d",
        r"\bmsm_loss +-?\d",
        r"\bmsm_lambda +1\b",
        r"\bmsm_gradient_norm +\d",
        r"\bmsm_motion_pred_real +\d",
        r"\| 0 → 1 \| \d",  # the per-pair motion table
        r"generator_loss == dmd_loss \+ lam \* msm_loss: True",
        r"already wrapped by msm_plugin; replacing",
        r"lam=0: generator_loss == dmd_loss: True",
        r"patched on the instance: \[\]",
        r"MSM keys after unwrap: \[\]",
        r"state_dict keys unchanged: True",
        r"ExtraLossConfig\(name='msm', options=\{'lam': 0\.5",
        r"msm_lambda from the config: 0\.5",
        r"ValueError: unknown option `msm\.lamda`; did you mean `lam`\?",
        r"TypeError: `extra_losses` should be a list of loss names",
    ],
    "02_motion_score_explained.ipynb": [
        r"mean \|D x\| = 0\.\d+ +mean \|x\| = 0\.\d+ +ratio = \d+\.\dx",
        r"mean\|D x_t\| / mean\|D x\| == alpha_t for every sigma: True",
        r"normalization='none': MSM gradient == D\^T D \(DMD gradient\).*: True",
        r"normalization='motion': MSM gradient == D\^T D \(DMD gradient\).*: True",
        r"order 1: measured spectrum ratio == 2 - 2 cos w at every w_k: True",
        r"order 2: measured spectrum ratio vs \(2 - 2 cos w\)\^2: max deviation \d+% of the peak",
        r"\| data \| 0\.\d+ \|",
    ],
    "03_dmd_vs_msm.ipynb": [
        r"wrote \d+ files to ",
        r"exit code 0",
        r"\*\*Smoke run, not evidence\*\*",
        r"## Ground-truth motion",
        r"\| dmd \| 2 \| \d",
        r"\| dmd\+msm \| 2 \| \d",
        r"\| dmd \| 0 \| \d+ \| `[0-9a-f]{16}` \|",
        r"motion_over_training\.png",
        r"motion_over_time\.png",
        r"seed0\.gif and seed0\.mp4",
        # The recorded full runs, rendered by the current report code.
        r"\*\*Worst regime for DMD\*\*.*\*\*slow \+ faint \+ high contrast\*\*",
        r"\*\*The DMD student passes every check on 3 of 3 seeds\*\*",
        r"\| velocity error / true speed \| 0\.061, 0\.0427, 0\.0558 \|",
        r"### Summary: mean difference \[min, max over seeds\] and verdict",
        r"\*\*The DMD student passes every check on 5 of 5 seeds\*\*",
    ],
}
# Minimum number of inline images (image/png plots, image/gif videos) per notebook.
MIN_IMAGES = {
    "01_quickstart.ipynb": {},
    "02_motion_score_explained.ipynb": {"image/png": 4},
    "03_dmd_vs_msm.ipynb": {"image/png": 8},
}


def _read(name: str):
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


def _text(nb) -> str:
    """Every stream, plain-text and Markdown output of the executed notebook, concatenated."""
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                # one print can arrive in several stream chunks: glue them back as printed
                parts.append(output.text)
            elif output.output_type in ("display_data", "execute_result"):
                for mime in ("text/markdown", "text/plain"):
                    if mime in output.data:
                        parts.append(f"\n{output.data[mime]}\n")
    return "".join(parts)


def _count(nb, mime: str) -> int:
    return sum(
        mime in output.get("data", {})
        for cell in nb.cells
        for output in cell.get("outputs", [])
        if output.output_type in ("display_data", "execute_result")
    )


def test_the_three_notebooks_are_there():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == NOTEBOOKS
    assert [path.name for path in execute_notebooks.notebooks()] == NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_valid(name):
    nb = _read(name)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    assert [cell for cell in nb.cells if cell.cell_type == "code"], "a notebook without code"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_executed_with_clean_outputs(name):
    """Every code cell ran and shows an output; no error, timestamp, absolute path or memory address.
    (Re-run `python examples/notebooks/execute.py` after changing a notebook or what it shows.)"""
    nb = _read(name)
    assert execute_notebooks.problems(nb) == []
    assert [cell.execution_count for cell in nb.cells if cell.cell_type == "code"] == list(
        range(1, 1 + sum(cell.cell_type == "code" for cell in nb.cells))
    )
    size = (NOTEBOOK_DIR / name).stat().st_size
    assert size < 400_000, f"{name} is {size} bytes: keep plots small (execute.py draws them at 60 dpi)"


def test_clean_removes_what_differs_between_machines_and_problems_finds_it(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(1)", execution_count=7)
    cell.metadata["execution"] = {"iopub.execute_input": "2026-01-01T10:00:00.000Z"}
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text=f"wrote 3 files to {tmp_path}/msm-demo-out\n"),
        nbformat.v4.new_output("stream", name="stderr", text="100%|####| 20/20 [00:01<00:00, 14.2it/s]\r"),
        nbformat.v4.new_output("execute_result", data={"text/plain": "<Obj at 0x7f3a2b1c9d90>"}, execution_count=7),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), cell, nbformat.v4.new_code_cell("x = 1")]
    found = execute_notebooks.problems(nb)
    assert any("timestamps" in p for p in found) and any("memory address" in p for p in found)
    assert any("absolute path" in p for p in found) and any("has no output" in p for p in found)
    execute_notebooks.clean(nb, tmp_path)
    assert [o.get("text", o.get("data")) for o in nb.cells[1].outputs] == [
        "wrote 3 files to msm-demo-out\n", {"text/plain": "<Obj at 0x...>"}
    ]
    assert nb.cells[1].execution_count == 1 and "execution" not in nb.cells[1].metadata
    assert execute_notebooks.problems(nb) == ["cell 2 ('x = 1') was not executed", "cell 2 ('x = 1') has no output"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_opens_with_an_intro_and_a_quick_switch(name):
    nb = _read(name)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    params = next(cell for cell in nb.cells if cell.cell_type == "code")
    assert 'QUICK = os.environ.get("MSM_NOTEBOOK_QUICK", "1") != "0"' in params.source


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom_in_quick_mode(name, tmp_path):
    """What execute.py does, in a temporary folder: the run, the expected printout, and (for the
    notebooks committed executed) outputs that clean up into a committable notebook."""
    before = sorted(p.name for p in NOTEBOOK_DIR.iterdir())
    nb = execute_notebooks.execute(NOTEBOOK_DIR / name, tmp_path)  # raises CellExecutionError, naming the cell

    errors = [o for cell in nb.cells for o in cell.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    text = _text(nb)
    missing = [pattern for pattern in EXPECTED[name] if not re.search(pattern, text)]
    assert missing == [], f"{name}: expected output not found: {missing}\n--- outputs ---\n{text[-4000:]}"
    for mime, least in MIN_IMAGES[name].items():
        assert _count(nb, mime) >= least, f"{name}: expected at least {least} {mime} outputs, got {_count(nb, mime)}"
    # Quick mode writes nothing next to the notebooks.
    assert sorted(p.name for p in NOTEBOOK_DIR.iterdir()) == before
    assert execute_notebooks.problems(execute_notebooks.clean(nb, tmp_path)) == []
