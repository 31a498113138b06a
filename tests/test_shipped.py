"""msm_plugin.shipped: discovery by name, from the source tree and from a built wheel's folder."""

import shutil
from pathlib import Path

import pytest

from msm_plugin import shipped
from msm_plugin.shipped import find_shipped, shipped_files

ROOT = Path(__file__).resolve().parents[1]


def test_source_tree_lists_the_top_level_files():
    patches = shipped_files("patch")
    assert patches["causvid"] == ROOT / "patches" / "causvid-extra-losses.patch"
    assert sorted(patches.values()) == sorted((ROOT / "patches").glob("*.patch"))
    configs = shipped_files("config")
    examples = [p for p in (ROOT / "examples" / "configs").iterdir() if p.suffix in (".yaml", ".py")]
    assert set(configs) == {path.stem for path in examples} and "fastgen_wan_t2v_dmd2_msm" in configs
    assert find_shipped("config", "causvid_wan_stage3_msm") == configs["causvid_wan_stage3_msm"]
    assert find_shipped("patch", "causvid-extra-losses.patch") == find_shipped("patch", "causvid")


def test_a_new_patch_is_found_without_code_changes(tmp_path, monkeypatch):
    """A package whose ``_shipped`` folder holds a second patch (as a built wheel would) lists both."""
    package = tmp_path / "msm_plugin"
    (package / "_shipped" / "patches").mkdir(parents=True)
    for name in ("causvid-extra-losses.patch", "self-forcing-extra-losses.patch"):
        shutil.copy(ROOT / "patches" / "causvid-extra-losses.patch", package / "_shipped" / "patches" / name)
    monkeypatch.setattr(shipped, "_PACKAGE", package)
    assert list(shipped_files("patch")) == ["causvid", "self-forcing"]
    assert find_shipped("patch", "self-forcing").parent == package / "_shipped" / "patches"


def test_unknown_names_list_the_shipped_ones():
    with pytest.raises(ValueError, match=r"no shipped patch named 'causvd'; shipped: causvid(, [a-z-]+)*$"):
        find_shipped("patch", "causvd")
    with pytest.raises(ValueError, match=r"`kind` should be one of \('patch', 'config'\), got 'patches'"):
        shipped_files("patches")


@pytest.mark.parametrize("name", sorted(shipped_files("config")))
def test_shipped_config_comments_name_commands_a_wheel_user_has(name):
    """A wheel holds no repository folders: the comments say `msm-plugin config/patch`, not paths."""
    import re

    text = find_shipped("config", name).read_text()
    repository_paths = re.findall(r"(?:examples/configs|examples/notebooks|patches)/[\w.-]*|git apply", text)
    assert repository_paths == [], f"{name} points to msm-plugin's repository: {repository_paths}"
    assert f"msm-plugin config {name}" in text, f"{name} does not say how to write itself out"
    for kind, named in re.findall(r"msm-plugin (config|patch) ([\w-]+)", text):
        assert named in shipped_files(kind), f"{name} names `msm-plugin {kind} {named}`, which is not shipped"
