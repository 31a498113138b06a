"""The documentation site (docs/, mkdocs.yml) stays complete and true: every page in the nav, the
site builds with --strict, every option and metric documented, the plugin examples run, the
changelog is CHANGELOG.md, and no file in the repository points outside it."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from msm_plugin import LossContext, MSMConfig, compose
from msm_plugin.config import parse_extra_losses

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _page(name):
    return (DOCS / name).read_text()


def _blocks(text, lang):
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def _nav_pages():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    return [next(iter(entry.values())) for entry in config["nav"]]


def test_every_page_is_in_the_nav_and_every_nav_entry_exists():
    pages = _nav_pages()
    assert sorted(pages) == sorted(path.name for path in DOCS.glob("*.md"))
    for name in ("index.md", "hosts.md", "options.md", "motion-losses.md", "metrics.md", "demo.md", "errors.md", "plugins.md", "logs.md", "changelog.md"):
        assert name in pages, name


def test_the_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr


def test_the_changelog_page_is_the_changelog():
    assert (DOCS / "changelog.md").read_text() == (ROOT / "CHANGELOG.md").read_text()


def test_every_msm_option_is_documented_and_the_full_block_validates():
    page = _page("options.md")
    for name in MSMConfig.option_names():
        assert re.search(rf"^\| `{name}`", page, flags=re.M) or f"| `t_min`, `t_max` |" in page and name in ("t_min", "t_max"), name
    block = next(block for block in _blocks(page, "yaml") if "extra_losses" in block)
    (spec,) = parse_extra_losses(yaml.safe_load(block))
    assert set(spec.options) == set(MSMConfig.option_names()) - {"feature"}  # `feature` is code-only


def test_every_metric_is_documented():
    from msm_plugin.metrics import METRICS

    page = _page("metrics.md")
    assert [key for key in METRICS if f"`{key}`" not in page] == []


def test_the_plugin_loss_example_composes():
    source = next(block for block in _blocks(_page("plugins.md"), "python") if "class FrameL2" in block)
    namespace = {}
    exec(compile(source, "plugins.md", "exec"), namespace)
    term = namespace["FrameL2"](weight=0.2)
    x = torch.ones(1, 2, 1, 1, 1, requires_grad=True)
    total, logs = compose(torch.tensor(1.0, dtype=torch.float64), {}, [term], LossContext(x, x.detach(), x.detach()))
    assert total.item() == 1.2 and logs["frame_l2"].item() == 1.0


def test_the_typed_plugin_options_example_validates_a_section(monkeypatch):
    from msm_plugin import registry
    from msm_plugin.config import build_extra_losses

    namespace = {}
    for block in _blocks(_page("plugins.md"), "python"):
        if "class FrameL2" in block and "LossOptions" not in block or "class TypedFrameL2" in block:
            exec(compile(block, "plugins.md", "exec"), namespace)
    monkeypatch.setitem(registry._registry.factories, "frame_l2", namespace["TypedFrameL2"])
    (loss,) = build_extra_losses({"extra_losses": ["frame_l2"], "frame_l2": {"weight": 0.2}})
    assert loss.weight == 0.2
    with pytest.raises(ValueError, match=r"unknown option `frame_l2.wieght`; did you mean `weight`\?"):
        build_extra_losses({"extra_losses": ["frame_l2"], "frame_l2": {"wieght": 0.2}})


def test_the_host_adapter_section_names_the_real_interface():
    from msm_plugin import hosts
    from msm_plugin.hosts import HOST_ENTRY_POINT_GROUP, ExtraLosses, Host

    page = _page("plugins.md")
    section = page[page.index("## A host adapter"):]
    for method in re.findall(r"`(\w+)\(", section):
        assert any(hasattr(owner, method) for owner in (Host, ExtraLosses, hosts)) or method in {"wrap_trainer", "LossContext"}, method
    assert f'[project.entry-points."{HOST_ENTRY_POINT_GROUP}"]' in section
    assert '[project.entry-points."msm_plugin.losses"]' in page


def test_every_host_has_a_section_with_its_example_config():
    from msm_plugin.hosts import available_hosts
    from msm_plugin.shipped import shipped_files

    page = _page("hosts.md")
    titles = {"causvid": "CausVid", "self_forcing": "Self-Forcing", "fastvideo": "FastVideo", "fastgen": "FastGen"}
    for host in available_hosts():
        assert f"\n## {titles[host]}\n" in page, host
    for config in shipped_files("config"):
        assert f"msm-plugin config {config}" in page, config


@pytest.mark.parametrize(
    "message",
    [
        "is not valid YAML: line L, column C",  # msm-train on a malformed YAML
        "exists and is not a report msm-eval wrote; give another --out, or --force to overwrite it",
        "needs a number of generated videos divisible by",
        "unknown option `msm.foo`. Options of extra loss 'msm'",
    ],
)
def test_the_error_catalogue_lists_the_command_line_refusals(message):
    assert message in _page("errors.md")


# Paths outside the repository and the project's internal bookkeeping have no place in what users read.
# (The brackets keep this pattern from matching its own source.)
_OUTSIDE = re.compile(r"\.\./shared|shared/UPSTREA[M]|TOY-NOTE[S]|[Ii]ssue [0-9]+|the issue[']s|the goal[']s|/wor[k]/[a-z]")


def test_no_file_refers_outside_the_repository_or_to_internal_work():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout to list the tracked files")
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    found = []
    for name in files:
        path = ROOT / name
        if path.is_symlink() or not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        found += [f"{name}: {match.group(0)!r}" for match in _OUTSIDE.finditer(text)]
    assert found == []
