"""Packaging: the build hook puts the top-level patches and example configs into the package, and
the built package reads its own copies. (CI also builds the real wheel and checks it installed.)"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_build_py_ships_patches_configs_and_py_typed(tmp_path):
    built = tmp_path / "lib"
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(built)],
        cwd=ROOT, check=True, capture_output=True, timeout=120,
    )
    package = built / "msm_plugin"
    assert (package / "py.typed").is_file()
    for source, target in (("patches", "patches"), ("examples/configs", "configs")):
        shipped = sorted(p.name for p in (package / "_shipped" / target).iterdir())
        assert shipped == sorted(p.name for p in (ROOT / source).iterdir()), source
        for name in shipped:
            assert (package / "_shipped" / target / name).read_bytes() == (ROOT / source / name).read_bytes()
    # The built package, imported on its own, finds its copies rather than the repository's.
    probe = "import json, msm_plugin.shipped as s; print(json.dumps([str(p) for p in s.shipped_files('patch').values()]))"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(built), "PATH": ""},
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found = [Path(path) for path in json.loads(done.stdout)]
    assert sorted(path.name for path in found) == sorted(p.name for p in (ROOT / "patches").glob("*.patch"))
    assert all(path.parent == package / "_shipped" / "patches" for path in found)


def test_license_is_apache_2_and_matches_the_metadata():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'license = "Apache-2.0"' in pyproject and 'license-files = ["LICENSE"]' in pyproject


def _pyproject_version() -> str:
    import re

    return re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), flags=re.M).group(1)


def test_the_version_is_written_once_and_the_changelog_leads_with_it():
    import re
    from importlib import metadata

    import msm_plugin

    version = _pyproject_version()
    assert msm_plugin.__version__ == metadata.version("msm-plugin") == version, "reinstall (pip install -e .) after a version change"
    package_sources = "\n".join(path.read_text() for path in (ROOT / "msm_plugin").rglob("*.py"))
    assert version not in package_sources and not re.search(r"__version__ = ['\"]\d+\.\d", package_sources)
    first = re.search(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), flags=re.M).group(1)
    assert first == version, f"CHANGELOG.md's first entry is {first}, pyproject.toml says {version}"


def test_compare_wheels_reports_missing_extra_and_changed_files():
    import doctest
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare_wheels", ROOT / ".ci" / "compare_wheels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert doctest.testmod(module).failed == 0
