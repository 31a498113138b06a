"""patches/*.patch: well-formed, small, only the expected upstream files, and every plugin name they
add exists. (That they apply with ``git apply`` to CausVid ``ca21150`` and Self-Forcing ``33593df``
was checked against the upstream sources, which CI does not have.)"""

import importlib
import re
from pathlib import Path


PATCHES = Path(__file__).resolve().parents[2] / "patches"
PATCH = PATCHES / "causvid-extra-losses.patch"
SELF_FORCING_PATCH = PATCHES / "self-forcing-extra-losses.patch"
HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def _hunks(text):
    """``[(old_count, new_count, lines)]`` of a unified diff, as git apply reads the headers."""
    hunks, current = [], None
    for line in text.splitlines():
        match = HUNK.match(line)
        if line.startswith("diff --git "):
            current = None  # the next file's ---/+++ headers belong to no hunk
        elif match:
            old, new = int(match[2] or 1), int(match[4] or 1)
            current = (old, new, [])
            hunks.append(current)
        elif current is not None and line[:1] in (" ", "+", "-", ""):
            current[2].append(line)
    return hunks


def test_patch_is_well_formed_small_and_touches_only_train_distillation():
    text = PATCH.read_text()
    files = re.findall(r"^diff --git a/(\S+) b/(\S+)$", text, flags=re.M)
    assert files == [("causvid/train_distillation.py", "causvid/train_distillation.py")]
    hunks = _hunks(text)
    assert hunks
    for old, new, lines in hunks:
        # A wrong count in a hunk header is what makes `git apply` call a patch corrupt.
        assert old == sum(line[:1] in (" ", "-", "") for line in lines)
        assert new == sum(line[:1] in (" ", "+", "") for line in lines)
    added = [line for _, _, lines in hunks for line in lines if line.startswith("+")]
    removed = [line for _, _, lines in hunks for line in lines if line.startswith("-")]
    assert removed == [] and 0 < len(added) <= 20


def test_every_plugin_name_the_patch_adds_exists():
    added = [line[1:] for line in PATCH.read_text().splitlines() if line.startswith("+") and not line.startswith("+++")]
    imported = {}
    for line in added:
        match = re.match(r"\s*from (msm_plugin[\w.]*) import (.+)$", line)
        if match:
            module = importlib.import_module(match[1])
            for name in (n.strip() for n in match[2].split(",")):
                imported[name] = getattr(module, name)
    assert set(imported) == {"apply_extra_losses", "pop_extra_logs", "check_extra_losses"}
    calls = {name for line in added for name in re.findall(r"(\w+)\(", line)}
    assert {"apply_extra_losses", "pop_extra_logs", "check_extra_losses"} <= calls
    assert sum('host="causvid"' in line for line in added) == 1
    assert all(callable(f) for f in imported.values())


def test_self_forcing_patch_is_well_formed_touches_its_entry_and_trainer_and_names_the_host():
    text = SELF_FORCING_PATCH.read_text()
    files = re.findall(r"^diff --git a/(\S+) b/(\S+)$", text, flags=re.M)
    assert files == [("train.py", "train.py"), ("trainer/distillation.py", "trainer/distillation.py")]
    hunks = _hunks(text)
    for old, new, lines in hunks:
        assert old == sum(line[:1] in (" ", "-", "") for line in lines)
        assert new == sum(line[:1] in (" ", "+", "") for line in lines)
    added = [line[1:] for _, _, lines in hunks for line in lines if line.startswith("+")]
    assert not [line for _, _, lines in hunks for line in lines if line.startswith("-")] and len(added) == 5
    imported = {}
    for line in added:
        match = re.match(r"\s*from (msm_plugin[\w.]*) import (.+)$", line)
        if match:
            module = importlib.import_module(match[1])
            imported.update({name.strip(): getattr(module, name.strip()) for name in match[2].split(",")})
    assert set(imported) == {"apply_extra_losses", "pop_extra_logs", "check_extra_losses"}
    assert sum('host="self_forcing"' in line for line in added) == 2
