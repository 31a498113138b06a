"""Execute the example notebooks in quick mode and write them back with small, deterministic outputs.

    python examples/notebooks/execute.py                    # all notebooks, in place
    python examples/notebooks/execute.py 01_quickstart.ipynb
    python examples/notebooks/execute.py --check            # only report what a committed notebook lacks

Each notebook runs top to bottom in a ``python3`` kernel (this interpreter), in a temporary
working folder, with ``MSM_NOTEBOOK_QUICK=1``, one torch thread and the demo's output folder
inside that temporary folder, so nothing is written next to the notebooks. The outputs are then
cleaned so that a re-run on another machine changes only what the code computes: no execution
timestamps, no temporary or home folder paths, no memory addresses, no progress bars, execution
counts 1, 2, 3, ... A cell that raises stops the run and nothing is written.

``tests/test_notebooks.py`` uses the same functions: it re-executes every notebook (CI) and checks
the committed ones with :func:`problems`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
#: The demo's output folder, relative to the kernel's working folder (so its printed path is too).
DEMO_OUT = "msm-demo-out"
# Per cell; the slowest (the quick demo) takes about a minute on one thread of a busy 2-core machine.
CELL_TIMEOUT_S = 900

_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")
_TIMESTAMP = re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?")
_PROGRESS = re.compile(r"\r|\d+it/s|s/it\]|it \[\d")


def notebooks() -> List[Path]:
    """The example notebooks, in order."""
    return sorted(HERE.glob("*.ipynb"))


#: Kernel configuration: inline plots at 60 dpi keep a notebook's PNGs to tens of kilobytes.
KERNEL_CONFIG = 'c.InlineBackend.print_figure_kwargs = {"bbox_inches": "tight", "dpi": 60}\n'


def environment(workdir: Path) -> dict:
    """The kernel's environment: quick mode, one thread, the demo's output inside ``workdir``, the
    source tree importable even when the package is not installed, small inline plots (an
    IPython profile in ``workdir``)."""
    profile = workdir / ".ipython" / "profile_default"
    profile.mkdir(parents=True, exist_ok=True)
    (profile / "ipython_kernel_config.py").write_text(KERNEL_CONFIG)
    env = dict(os.environ)
    env.update(
        IPYTHONDIR=str(workdir / ".ipython"),
        MSM_NOTEBOOK_QUICK="1",
        # One torch thread: oversubscribed OpenMP threads made the quick demo ~10x slower on a busy
        # 2-core machine.
        MSM_NOTEBOOK_THREADS="1",
        MSM_NOTEBOOK_OUT=DEMO_OUT,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        MPLBACKEND="module://matplotlib_inline.backend_inline",
    )
    env.pop("WANDB_MODE", None)
    return env


def execute(path: Path, workdir: Path):
    """Run the notebook at ``path`` top to bottom with its working folder ``workdir``; returns it
    executed (nbclient raises ``CellExecutionError``, naming the cell, on the first error)."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    client.execute(env=environment(workdir))  # handed to the kernel manager when it starts the kernel
    return nb


def _scrub(text: str, folders: List[str]) -> str:
    for folder, name in folders:
        text = text.replace(folder + os.sep, "").replace(folder, name)
    return _ADDRESS.sub("0x...", text)


def clean(nb, workdir: Path):
    """Make an executed notebook's outputs deterministic and machine-free (in place; returns it)."""
    folders = [(str(workdir.resolve()), "."), (str(workdir), "."), (str(REPO), "."), (str(Path.home()), "~")]
    folders = sorted(set(folders), key=lambda pair: -len(pair[0]))
    nb.metadata.pop("widgets", None)
    nb.metadata["language_info"] = {"name": "python"}
    count = 0
    for cell in nb.cells:
        cell.metadata.pop("execution", None)  # nbclient's start/end timestamps
        if cell.cell_type != "code" or cell.execution_count is None:
            continue
        count += 1
        cell.execution_count = count
        outputs = []
        for output in cell.outputs:
            if output.output_type == "stream":
                if output.name == "stderr" and _PROGRESS.search(output.text):
                    continue  # a progress bar: timings and carriage returns
                output.text = _scrub(output.text, folders)
            elif output.output_type in ("display_data", "execute_result"):
                output.pop("transient", None)
                if output.output_type == "execute_result":
                    output.execution_count = count
                for mime in ("text/plain", "text/markdown", "text/html"):
                    if mime in output.data:
                        output.data[mime] = _scrub(output.data[mime], folders)
            outputs.append(output)
        cell.outputs = outputs
    return nb


def _texts(nb) -> List[str]:
    """Every text the outputs hold (streams, plain text, Markdown, HTML, tracebacks)."""
    texts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                texts.append(output.text)
            elif output.output_type == "error":
                texts.append("\n".join(output.traceback))
            else:
                texts += [output.data[m] for m in ("text/plain", "text/markdown", "text/html") if m in output.get("data", {})]
    return texts


def problems(nb) -> List[str]:
    """What keeps a notebook from being committed as it is: a code cell not executed or without an
    output, an error output, an execution timestamp, an absolute path, a memory address."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        where = f"cell {index} ({cell.source.strip().splitlines()[0][:40] if cell.source.strip() else 'empty'!r})"
        if cell.execution_count is None:
            found.append(f"{where} was not executed")
        if not cell.get("outputs"):
            found.append(f"{where} has no output")
        if any(output.output_type == "error" for output in cell.get("outputs", [])):
            found.append(f"{where} raised an error")
        if "execution" in cell.metadata:
            found.append(f"{where} carries execution timestamps")
    for text in _texts(nb):
        for pattern, what in (
            (_TIMESTAMP, "a timestamp"),
            (_ADDRESS, "a memory address"),
            (re.compile(r"(?<![\w.~])/(?:tmp|home|root|work|Users|var|private)/[\w.-]+"), "an absolute path"),
        ):
            match = pattern.search(text)
            if match:
                found.append(f"an output holds {what}: {match.group(0)!r}")
    return found


def main(argv: Optional[List[str]] = None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(prog="execute.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebook file names (default: all)")
    parser.add_argument("--check", action="store_true", help="report what the committed notebooks lack; run nothing")
    args = parser.parse_args(argv)
    known = {path.name: path for path in notebooks()}
    unknown = [name for name in args.names if name not in known]
    if unknown:
        parser.error(f"no notebook named {unknown[0]!r}; notebooks: {', '.join(known)}")
    status = 0
    for name in args.names or list(known):
        if args.check:
            found = problems(nbformat.read(known[name], as_version=4))
            print(f"{name}: {'; '.join(found) if found else 'ok'}")
            status = status or int(bool(found))
            continue
        with tempfile.TemporaryDirectory(prefix="msm-notebook-") as tmp:
            nb = clean(execute(known[name], Path(tmp)), Path(tmp))
        found = problems(nb)
        if found:
            print(f"{name}: not written: {'; '.join(found)}", file=sys.stderr)
            status = 1
            continue
        nbformat.write(nb, known[name])
        print(f"{name}: executed and written")
    return status


if __name__ == "__main__":
    sys.exit(main())
