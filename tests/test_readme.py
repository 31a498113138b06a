"""The README stays short and true: its size, its test command (which CI runs), its configs (they
validate on their hosts), its Python (it runs) and its links (they resolve)."""

import ast
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from msm_plugin.adapters import check_extra_losses

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
#: What a researcher reads in five minutes.
MAX_BYTES = 15_000


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_the_readme_is_short():
    size = len(README.encode())
    assert size <= MAX_BYTES, f"README.md is {size} bytes, over {MAX_BYTES}: move detail to docs/"


def test_ci_runs_the_readme_test_command():
    commands = [line.split("#")[0].strip() for block in _blocks("bash") for line in block.splitlines()]
    assert "python -m pytest" in commands
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert ci[-1] == "python -m pytest"
    # CI installs the CPU torch build that lies on disk first, then the README's extras (and the docs').
    assert "pip install torch==2.13.0" in ci and 'pip install -e ".[test,docs]"' in ci
    assert 'pip install -e ".[test]"' in commands and "pip install torch" in commands


def test_the_install_section_says_the_package_is_not_on_the_index_yet():
    section = README[README.index("## Install"):README.index("## The two commands")]
    assert "Not on the package index yet" in section and "pip install msm-plugin" not in README


@pytest.mark.parametrize(
    "host, block",
    [(host, block) for block in _blocks("yaml") for host in ["fastvideo" if "_target_" in block else "causvid"]],
)
def test_each_yaml_block_validates_on_its_host(host, block):
    config = OmegaConf.create(block)
    section = config.method if host == "fastvideo" else config
    (loss,) = check_extra_losses(section, host=host)
    assert loss.name == "msm" and loss.weight == 0.5


def test_the_fastgen_model_class_line_validates():
    block = next(block for block in _blocks("python") if "MSMDMD2Model" in block)
    call = next(node for node in ast.walk(ast.parse(block)) if isinstance(node, ast.Call) and node.keywords)
    keywords = {kw.arg: eval(compile(ast.Expression(kw.value), "README.md", "eval")) for kw in call.keywords}
    assert keywords.pop("config") is None
    (loss,) = check_extra_losses(keywords, host="fastgen")
    assert loss.name == "msm" and loss.weight == 0.5


def test_the_python_api_block_runs_on_a_host_trainer():
    from tests.adapters.standins import CausVidTrainer, make_config

    block = next(block for block in _blocks("python") if "wrap_trainer" in block)
    trainer = CausVidTrainer(make_config())
    namespace = {"trainer": trainer}
    exec(compile(block, "README.md", "exec"), namespace)
    assert "compute_distribution_matching_loss" not in vars(trainer.distillation_model)  # unwrapped again
    generated = namespace["generated"]
    assert namespace["loss"].dtype.is_floating_point and generated.grad is not None and generated.grad.abs().sum() > 0


def test_links_resolve():
    links = re.findall(r"\]\(([^)#\s]+)(?:#([\w-]+))?\)", README)
    assert links
    for target, anchor in links:
        if target.startswith("http"):
            continue
        path = ROOT / target
        assert path.is_file(), f"README links to {target}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", path.read_text(), flags=re.M)
            slugs = {re.sub(r"[^\w\s-]", "", h).strip().lower().replace(" ", "-") for h in headings}
            assert anchor in slugs, f"README links to {target}#{anchor}; its headings: {sorted(slugs)}"


def test_results_section_is_there():
    assert re.search(r"^## Results$", README, flags=re.M)
