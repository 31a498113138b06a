"""Every command the README, the docs, the notebooks and the shipped configs show exists: its
program is one of the package's, each ``--flag`` it names is one that program takes, and a command
line in a code block parses as written."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path
from typing import Iterator, List, Tuple

import nbformat
import pytest

from msm_plugin import cli, train
from msm_plugin.metrics import cli as eval_cli
from msm_plugin.shipped import shipped_files
from msm_plugin.toy import cli as demo_cli

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "examples" / "notebooks").glob("*.ipynb"))

# How a command starts -> the program. `torchrun ... -m msm_plugin.train` is msm-train.
_START = re.compile(
    r"(?<![\w/.-])(msm-demo|msm-plugin|msm-eval|msm-train|-m msm_plugin\.train|-m msm_plugin\.metrics\.cli|\$\(which msm-train\))(?=\s|$)"
)
_PROGRAM = {"-m msm_plugin.train": "msm-train", "-m msm_plugin.metrics.cli": "msm-eval", "$(which msm-train)": "msm-train"}
# Where a command line ends: a comment, a redirection, a pipe or the next command.
_END = re.compile(r"\s#|\s>|\s\|\s|&&|;|\)$")


def _parser(program: str, tokens: List[str]) -> argparse.ArgumentParser:
    if program == "msm-train":
        host = tokens[tokens.index("--host") + 1] if "--host" in tokens[:-1] else train.DEFAULT_HOST
        # A placeholder (`--host NAME`) gets the default host's flags; a full parse then names it.
        return train.build_parser(host if host in train.runnable_hosts() else train.DEFAULT_HOST)
    return {"msm-demo": demo_cli.build_parser, "msm-plugin": cli.build_parser, "msm-eval": eval_cli.build_parser}[program]()


def _flags(parser: argparse.ArgumentParser) -> set:
    """Every option string of ``parser`` and of its subcommands."""
    flags = set()
    for action in parser._actions:
        flags.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags |= _flags(sub)
    return flags


def _commands(text: str, anywhere: bool = True) -> Iterator[Tuple[str, str]]:
    """``(program, arguments)`` of every command in ``text``: anywhere in a command line, only at
    the start of a code span (where prose may name a program: "msm-plugin's subclass")."""
    for match in _START.finditer(text):
        if not anywhere and text[: match.start()].strip():
            continue
        rest = text[match.end():]
        end = _END.search(rest)
        yield _PROGRAM.get(match.group(1), match.group(1)), (rest[: end.start()] if end else rest).strip()


def _spans(markdown: str) -> Iterator[Tuple[str, bool]]:
    """``(text, is_a_command_line)``: each line of a fenced bash block (a command line) and each
    inline code span elsewhere (a mention)."""
    for language, block in re.findall(r"```(\w*)\n(.*?)```", markdown, flags=re.S):
        for line in block.splitlines() if language in ("bash", "sh", "") else []:
            yield line, True
    prose = re.sub(r"```.*?```", "", markdown, flags=re.S)
    for span in re.findall(r"``(.+?)``|`([^`\n]+)`", prose):
        yield span[0] or span[1], False


def _check(program: str, arguments: str, full: bool) -> List[str]:
    """What is wrong with one command: unknown flags; for a full command line, a parse error."""
    try:
        tokens = shlex.split(arguments)
    except ValueError:
        tokens = arguments.split()
    synopsis = any(t.startswith("[") or t.endswith("]") or t == "..." for t in tokens) or "|" in arguments
    parser = _parser(program, [t.strip("[]") for t in tokens])
    known = _flags(parser)
    wrong = [
        f"`{program} {arguments}`: no option {flag}"
        for flag in (t.strip("[]").split("=")[0] for t in tokens)
        if flag.startswith("--") and flag not in known
    ]
    if wrong or not full or synopsis:
        return wrong
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(tokens)
    except SystemExit as exit_info:
        if exit_info.code:
            return [f"`{program} {arguments}`: {err.getvalue().strip().splitlines()[-1]}"]
    except ValueError as error:  # msm-train --host with an unknown name
        return [f"`{program} {arguments}`: {error}"]
    return []


def _check_text(text: str, full: bool) -> List[str]:
    """Problems of the commands in a command line (``full``: parsed as written) or a code span."""
    return [problem for program, arguments in _commands(text, anywhere=full) for problem in _check(program, arguments, full)]


def _markdown_files() -> List[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda path: path.name)
def test_commands_in_the_readme_and_docs_exist(path):
    problems = [problem for text, full in _spans(path.read_text()) for problem in _check_text(text, full)]
    assert problems == []


def test_the_readme_and_docs_show_commands_at_all():
    found = [command for path in _markdown_files() for text, _ in _spans(path.read_text()) for command in _commands(text)]
    assert {program for program, _ in found} == {"msm-demo", "msm-plugin", "msm-eval", "msm-train"}


def _notebook_problems(path: Path) -> List[str]:
    nb = nbformat.read(path, as_version=4)
    problems = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            problems += [p for text, full in _spans(cell.source) for p in _check_text(text, full)]
            continue
        # A code cell: commands in comments and strings, and flags handed to msm-demo's main().
        problems += _check_text(cell.source, False)
        if "msm_plugin.toy.cli" in cell.source or "DEMO_ARGS" in cell.source:
            known = _flags(demo_cli.build_parser())
            problems += [f"msm-demo has no option {flag}" for flag in re.findall(r"[\"'](--[a-z][\w-]*)[\"']", cell.source) if flag not in known]
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_commands_in_the_notebooks_exist(path):
    assert _notebook_problems(path) == []


@pytest.mark.parametrize("name", sorted(shipped_files("config")))
def test_commands_in_the_shipped_configs_exist(name):
    """An indented comment line is a command line; elsewhere only `code spans` are commands."""
    text = shipped_files("config")[name].read_text()
    problems = []
    for line in text.splitlines():
        command = re.match(r"^(?:#\s{2,}|\s{4})(\S.*)$", line)
        if command:
            problems += _check_text(command.group(1), True)
        problems += [p for span in re.findall(r"`([^`]+)`", line) for p in _check_text(span, False)]
    assert problems == []


def test_commands_in_the_programs_own_help_exist():
    docs = [cli.__doc__, train.__doc__, eval_cli.__doc__, demo_cli.__doc__]
    assert [problem for doc in docs for line in doc.splitlines() for problem in _check_text(line.strip(), False)] == []


@pytest.mark.parametrize(
    "text, problem",
    [
        ("msm-demo --sweep 0.5 4", "`msm-demo --sweep 0.5 4`: no option --sweep"),
        ("msm-plugin patch causvid", "`msm-plugin patch causvid`: msm-plugin patch: error: the following arguments are required: DIR"),
        ("torchrun -m msm_plugin.train --host self_forcing --no_save --config_path c.yaml --logdir x", None),
        ("msm-eval GENERATED [--groups K|files] [--nope]", "`msm-eval GENERATED [--groups K|files] [--nope]`: no option --nope"),
    ],
)
def test_the_checker_itself(text, problem):
    assert _check_text(text, True) == ([problem] if problem else [])
