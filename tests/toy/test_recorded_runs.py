"""The recorded full runs (``docs/results/``) behind the README and the docs: they are what today's
commands configure, they agree with each other, and every figure the pages quote is theirs.

The runs themselves take 10-50 CPU minutes each (``msm-demo``, ``--regimes``, ``--benchmark``), so
CI reads what they wrote instead of re-running them; the quick preset and the determinism tests in
``test_experiment.py`` exercise the same code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from msm_plugin.toy.cli import build_parser, config_from_args
from msm_plugin.toy.checks import COMPARED
from msm_plugin.toy.regimes import MAP_KEYS, REGIMES, WORST_REGIME, worst_regime
from msm_plugin.toy.report import headline

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
README = (ROOT / "README.md").read_text()
LOSSES_PAGE = (ROOT / "docs" / "motion-losses.md").read_text()


def _load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def default():
    return _load("msm-demo")


@pytest.fixture(scope="module")
def regimes():
    return _load("msm-demo-regimes")


@pytest.fixture(scope="module")
def benchmark():
    return _load("msm-demo-benchmark")


def _json_roundtrip(value):
    return json.loads(json.dumps(value))


def _cli_config(*flags):
    return config_from_args(build_parser().parse_args(list(flags)))


def test_the_recorded_runs_are_what_the_commands_configure_today(default, regimes, benchmark):
    assert default["msm_demo_kind"] == "default" and benchmark["msm_demo_kind"] == "benchmark"
    assert default["config"] == _json_roundtrip(_cli_config().to_dict())
    assert benchmark["config"] == _json_roundtrip(_cli_config("--benchmark").to_dict())
    base = _json_roundtrip(_cli_config("--regimes").to_dict())
    for key in ("data", "generator_net", "critic_net", "seeds", "steps", "eval_steps", "trainer", "num_eval", "teacher_steps"):
        assert regimes["config"][key] == base[key], key
    assert [c["regime"] for c in regimes["cells"]] == _json_roundtrip([r.to_dict() for r in REGIMES])
    # One code version and library set behind every figure the pages quote.
    assert default["versions"] == regimes["versions"] == benchmark["versions"]
    assert default["versions"]["torch_threads"] == 1


def test_the_default_run_and_the_benchmark_sit_in_the_maps_worst_regime(default, regimes, benchmark):
    # Recomputed from the cells (not the recorded "worst" field): the rule picks the same regime
    # the code's constant names, and both runs use that regime's data.
    assert worst_regime(regimes) == WORST_REGIME == regimes["worst"]
    worst = next(r for r in REGIMES if r.name == WORST_REGIME)
    for run in (default, benchmark):
        for key, value in worst.data.items():
            assert run["config"]["data"][key] == _json_roundtrip(value), key


def test_the_default_runs_dmd_arm_repeats_the_maps_cell_to_every_digit(default, regimes):
    # Separate processes, a different mode, the same seeds and settings: bit-identical motion.
    cell = next(c for c in regimes["cells"] if c["regime"]["name"] == WORST_REGIME)
    for run in (r for r in default["runs"] if r["arm"] == "dmd"):
        for point in run["checkpoints"]:
            recorded = next(p for p in cell["checkpoints"] if p["step"] == point["step"])["seeds"][str(run["seed"])]
            for key in ("relative_velocity_error", "speed_ratio", "frozen_share", "blob_strength"):
                assert point["truth"][key] == recorded[key], (run["seed"], point["step"], key)


def test_the_dmd_student_passes_its_checks_in_both_recorded_runs(default, benchmark):
    assert headline(default)[0].startswith("**The DMD student passes every check on 3 of 3 seeds**")
    assert headline(benchmark)[0].startswith("**The DMD student passes every check on 5 of 5 seeds**")


def _row(page: str, first_cell: str) -> str:
    rows = [line for line in page.splitlines() if line.startswith(f"| {first_cell} |")]
    assert len(rows) == 1, f"expected one table row starting with {first_cell!r}, found {len(rows)}"
    return rows[0]


def _word(verdict: str) -> str:
    return verdict.split()[0]  # "better on every seed" -> "better"


@pytest.mark.parametrize(
    "label, arm",
    [("DMD alone", "dmd"), ("MSM, lam 0.25", "dmd+msm lam=0.25"), ("MSM, lam 1 (default)", "dmd+msm lam=1"),
     ("weighted MSM", "dmd+msm pair weights"), ("temporal variance", "dmd+temporal variance")],
)
def test_the_motion_losses_page_quotes_the_benchmark(benchmark, label, arm):
    row = _row(LOSSES_PAGE, label)
    truth, metrics = benchmark["summary"][arm]["truth"], benchmark["summary"][arm]["metrics"]
    expected = [f"{truth['relative_velocity_error']['mean']:.2g}", f"{truth['frozen_share']['mean']:.2g}",
                f"{truth['flicker']['mean']:.2g}", f"{metrics['appearance_fd']['mean']:.3f}"]
    cells = [c.strip() for c in row.strip("|").split("|")][2:]
    if arm == "dmd":
        assert cells == expected
        return
    verdicts = benchmark["comparisons"][arm]
    words = [_word(verdicts[k]["verdict"]) for k in ("relative_velocity_error", "frozen_share", "flicker", "appearance_fd")]
    assert [c.split(", ")[1] for c in cells] == words
    # Numbers to the digits shown (a trailing zero may be written out: 0.030).
    assert [float(c.split(", ")[0]) for c in cells] == [float(e) for e in expected]


#: The README's benchmark rows: arm -> the row's first cell (its config).
README_ROWS = {"dmd+msm lam=0.25": "`msm: {lam: 0.25}`", "dmd+msm lam=0.5": "`msm: {lam: 0.5}`",
               "dmd+msm lam=1": "`msm: {lam: 1}` (default)", "dmd+msm pair weights": "`msm: {lam: 1, pair_weights: hybrid}`",
               "dmd+temporal variance": "`temporal_variance: {weight: 0.05}`"}


def test_the_readme_quotes_the_benchmark(benchmark):
    summary, comparisons = benchmark["summary"], benchmark["comparisons"]
    curve = {arm: [p["truth"]["relative_velocity_error"]["mean"] for p in s["curve"]] for arm, s in summary.items()}
    steps = [p["step"] for p in summary["dmd"]["curve"]]
    at150 = steps.index(150)
    assert f"DMD: {curve['dmd'][at150]:.2f} at\n  step 150, {curve['dmd'][-1]:.2f} at the end" in README
    for arm, lower_until in (("dmd+msm lam=0.25", 250), ("dmd+msm lam=0.5", 150)):
        row = _row(README, README_ROWS[arm])
        better = [p["step"] for p in comparisons[arm]["over_training"] if p["relative_velocity_error"]["verdict"].startswith("better")]
        assert better == [s for s in steps if s <= lower_until]
        assert f"steps 50-{lower_until} ({curve[arm][at150]:.2f} at step 150)" in row
        assert f"unresolved ({curve[arm][-1]:.2f})" in row
        assert comparisons[arm]["relative_velocity_error"]["verdict"] == "unresolved"
    for arm in ("dmd+msm lam=1", "dmd+msm pair weights", "dmd+temporal variance"):
        row = _row(README, README_ROWS[arm])
        worse = [p["step"] for p in comparisons[arm]["over_training"] if p["relative_velocity_error"]["verdict"].startswith("worse")]
        assert worse == [s for s in steps if s >= 100]
        truth = summary[arm]["truth"]
        assert f"({truth['relative_velocity_error']['mean']:.2f}" in row
        assert f"{round(100 * truth['frozen_share']['mean'])}% frozen" in row
    for arm, config in README_ROWS.items():
        assert comparisons[arm]["flicker"]["verdict"] == "worse on every seed"
        assert _row(README, config).endswith("| higher on every seed |")  # temporal roughness


def test_the_readme_quotes_the_regime_map(regimes):
    passing = [c for c in regimes["cells"] if c["checkpoints"][-1]["passed"]]
    assert len(passing) == 8 and f"in all {len(passing)} regimes where it has" in README
    # "the speed ends within 3% of the true one on every seed, no video frozen"
    for cell in passing:
        end = cell["checkpoints"][-1]
        assert abs(end["speed_ratio"]["min"] - 1) <= 0.03 and abs(end["speed_ratio"]["max"] - 1) <= 0.03
        assert end["frozen_share"]["max"] == 0
    worst = next(c for c in regimes["cells"] if c["regime"]["name"] == WORST_REGIME)
    at200 = next(p for p in worst["checkpoints"] if p["step"] == 200)
    assert f"DMD is still at {at200['speed_ratio']['mean']:.2f} of the true speed" in README
    assert f"with {round(100 * at200['frozen_share']['mean'])}% of its videos frozen at step 200" in README
    assert f"appearance / motion energy {worst['appearance_over_motion']:.0f}" in README
    failing = [c["checkpoints"][-1]["speed_ratio"]["mean"] for c in regimes["cells"] if not c["checkpoints"][-1]["passed"]]
    assert re.search(rf"slow \({min(failing):.2f}-{max(failing):.2f}\)", README)


def test_the_readmes_regime_table_is_the_recorded_map(regimes):
    for cell in regimes["cells"]:
        name = cell["regime"]["name"]
        label = f"**{name}**" if name == WORST_REGIME else name
        points = {p["step"]: p for p in cell["checkpoints"]}
        cells = [f"{cell['appearance_over_motion']:.0f}"]
        cells += [f"{points[s]['speed_ratio']['mean']:.2f}, {points[s]['frozen_share']['mean']:.2f}" for s in (100, 200, 300)]
        cells += [f"{cell['checkpoints'][-1]['passed_seeds']}/{len(regimes['config']['seeds'])}"]
        assert _row(README, label) == "| " + " | ".join([label, *cells]) + " |"


# docs/demo.md's own tables: every number agrees with the recorded runs to the digits it shows.
DEMO_PAGE = (ROOT / "docs" / "demo.md").read_text()
_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?")


def _shows(text: str, value: float) -> bool:
    """``text`` (one printed number) is ``value`` rounded to the digits ``text`` shows."""
    mantissa, _, exponent = text.replace(",", "").partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    unit = 10.0 ** (-decimals + (int(exponent) if exponent else 0))
    return abs(float(text.replace(",", "")) - value) <= 0.5 * unit * (1 + 1e-9)


def _page_table(header_start: str):
    """The rows (lists of cells) of the one table of docs/demo.md whose header starts with ``header_start``."""
    lines = DEMO_PAGE.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(f"| {header_start}")]
    assert len(starts) == 1, header_start
    rows = []
    for line in lines[starts[0] + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def _assert_shows(cell: str, values: list, where):
    shown = _NUMBER.findall(cell)
    assert len(shown) == len(values) and all(_shows(t, v) for t, v in zip(shown, values)), (where, cell, values)


_STAT = ("mean", "min", "max")
_MAP_KEYS = [key for key, *_ in MAP_KEYS]


def test_demo_page_regime_map_tables(regimes):
    rows = _page_table("regime | appearance / motion")
    assert len(rows) == len(regimes["cells"])
    for row, cell in zip(rows, regimes["cells"]):
        assert row[0].strip("*").startswith(cell["regime"]["name"].split(":")[0]), (row[0], cell["regime"]["name"])
        end = cell["checkpoints"][-1]
        _assert_shows(row[1], [cell["appearance_over_motion"]], row[0])
        for text, key in zip(row[2:6], _MAP_KEYS):
            _assert_shows(text, [end[key][s] for s in _STAT], (row[0], key))
        assert row[6].startswith(f"{end['passed_seeds']}/3")
    cells = {c["regime"]["name"]: c for c in regimes["cells"]}
    for row in _page_table("regime | step 50"):
        cell = cells[row[0]] if row[0] in cells else next(c for n, c in cells.items() if n.startswith(row[0]))
        for text, point in zip(row[1:], cell["checkpoints"]):
            _assert_shows(text, [point[k]["mean"] for k in _MAP_KEYS[:3]], (row[0], point["step"]))


# The page's columns: the compared metrics; its end-of-training table leaves out the direction.
_DIFF_KEYS = [key for _, key, *_ in COMPARED]
_BENCH_COLUMNS = [(part, key) for part, key, *_ in COMPARED if key != "direction_accuracy"]


def test_demo_page_benchmark_tables(benchmark):
    rows = _page_table("arm | velocity error / true speed")
    assert [r[0] for r in rows] == ["data", *benchmark["summary"]]
    for text, (part, key) in zip(rows[0][1:], _BENCH_COLUMNS):
        _assert_shows(text, [benchmark["data"][part][key]], ("data", key))
    for row in rows[1:]:
        summary = benchmark["summary"][row[0]]
        for text, (part, key) in zip(row[1:], _BENCH_COLUMNS):
            _assert_shows(text, [summary[part][key]["mean"], summary[part][key]["std"]], (row[0], key))
    rows = _page_table("arm − DMD | velocity error")
    assert [r[0] for r in rows] == list(benchmark["comparisons"])
    for row in rows:
        for text, key in zip(row[1:], _DIFF_KEYS):
            verdict = benchmark["comparisons"][row[0]][key]
            _assert_shows(text, [verdict["mean"]], (row[0], key))
            assert text.split()[-1].strip("*") == _word(verdict["verdict"]), (row[0], key, text)
    rows = _page_table("arm − DMD | step 50")
    assert rows[0][0] == "DMD itself"
    _assert_shows(" ".join(rows[0][1:]), [p["truth"]["relative_velocity_error"]["mean"]
                                          for p in benchmark["summary"]["dmd"]["curve"]], "DMD")
    for row in rows[1:]:
        for text, point in zip(row[1:], benchmark["comparisons"][row[0]]["over_training"]):
            _assert_shows(text, [point["relative_velocity_error"]["mean"]], (row[0], point["step"]))
            assert text.split()[-1] == _word(point["relative_velocity_error"]["verdict"]), (row[0], point["step"])
