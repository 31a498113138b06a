"""The example notebooks: committed without outputs, and each runs top to bottom in quick mode.

Every notebook is executed with nbclient in a ``python3`` kernel (jupyter_client replaces the
kernelspec's ``python`` by this interpreter, so the kernel sees this environment), with
``MSM_NOTEBOOK_QUICK=1`` and ``MSM_NOTEBOOK_THREADS=1``, its working directory and output folder
in a pytest temporary directory. The teacher is exact (no training, no cache).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbclient
import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "examples" / "notebooks"
NOTEBOOKS = ["01_quickstart.ipynb", "02_motion_score_explained.ipynb", "03_dmd_vs_msm.ipynb"]
# Per cell; the slowest (the quick demo) takes about a minute on one thread of a busy 2-core machine.
CELL_TIMEOUT_S = 900

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
        r"## Ground-truth motion",
        r"\| dmd \| 2 \| \d",
        r"\| dmd\+msm \| 2 \| \d",
        r"\| dmd \| 0 \| \d+ \| `[0-9a-f]{16}` \|",
        r"motion_over_training\.png",
        r"seed0\.gif and seed0\.mp4",
    ],
}
# Minimum number of inline images (image/png plots, image/gif videos) per notebook.
MIN_IMAGES = {
    "01_quickstart.ipynb": {},
    "02_motion_score_explained.ipynb": {"image/png": 4},
    "03_dmd_vs_msm.ipynb": {"image/png": 2, "image/gif": 1},
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


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_valid_and_has_no_outputs(name):
    nb = _read(name)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, "a notebook without code"
    for cell in code:
        assert cell.outputs == [], f"{name}: a committed code cell has outputs (strip them): {cell.source[:60]!r}"
        assert cell.execution_count is None, f"{name}: a committed code cell has an execution count"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_opens_with_an_intro_and_a_quick_switch(name):
    nb = _read(name)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    params = next(cell for cell in nb.cells if cell.cell_type == "code")
    assert 'QUICK = os.environ.get("MSM_NOTEBOOK_QUICK", "1") != "0"' in params.source


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom_in_quick_mode(name, tmp_path, monkeypatch):
    # The kernel inherits this environment: quick mode, outputs under tmp_path,
    # and the source tree importable even when the package is not installed.
    monkeypatch.setenv("MSM_NOTEBOOK_QUICK", "1")
    # One torch thread: the kernel shares the cores with whatever else runs, and oversubscribed
    # OpenMP threads made the quick demo ~10x slower on a busy 2-core machine (one thread: 30 s).
    monkeypatch.setenv("MSM_NOTEBOOK_THREADS", "1")
    monkeypatch.setenv("MSM_NOTEBOOK_OUT", str(tmp_path / "demo-out"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    nb = _read(name)
    before = sorted(p.name for p in NOTEBOOK_DIR.iterdir())
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, on the first error

    errors = [o for cell in nb.cells for o in cell.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    text = _text(nb)
    missing = [pattern for pattern in EXPECTED[name] if not re.search(pattern, text)]
    assert missing == [], f"{name}: expected output not found: {missing}\n--- outputs ---\n{text[-4000:]}"
    for mime, least in MIN_IMAGES[name].items():
        assert _count(nb, mime) >= least, f"{name}: expected at least {least} {mime} outputs, got {_count(nb, mime)}"
    # Quick mode writes nothing next to the notebooks.
    assert sorted(p.name for p in NOTEBOOK_DIR.iterdir()) == before
