"""Check that two wheels hold the same files with the same contents: ``python compare_wheels.py A.whl B.whl``.

CI builds one wheel from the sdist (what a user who installs the sdist gets) and one from the
source tree; a file missing from MANIFEST.in, or a stale one left in ``build/``, makes them
differ. Zip timestamps and member order are ignored; names and bytes are not. Exit status 0 when
equal, 1 with the differences on stderr.
"""

from __future__ import annotations

import sys
import zipfile
from typing import Dict, List


def members(path: str) -> Dict[str, bytes]:
    """Every file in the wheel at ``path``: name -> contents."""
    with zipfile.ZipFile(path) as wheel:
        return {info.filename: wheel.read(info) for info in wheel.infolist() if not info.is_dir()}


def differences(first: str, second: str) -> List[str]:
    """What differs between two wheels, one line each; empty when they hold the same files.

    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> def wheel(name, files):
    ...     path = os.path.join(folder, name)
    ...     with zipfile.ZipFile(path, "w") as archive:
    ...         for member, text in files.items():
    ...             archive.writestr(member, text)
    ...     return path
    >>> a = wheel("a.whl", {"pkg/x.py": "1", "pkg/y.py": "2"})
    >>> differences(a, wheel("b.whl", {"pkg/y.py": "2", "pkg/x.py": "1"}))
    []
    >>> differences(a, wheel("c.whl", {"pkg/x.py": "1!", "pkg/z.py": "3"}))
    ['only in a.whl: pkg/y.py', 'only in c.whl: pkg/z.py', 'contents differ: pkg/x.py']
    """
    a, b = members(first), members(second)
    name_a, name_b = first.rsplit("/", 1)[-1], second.rsplit("/", 1)[-1]
    lines = [f"only in {name_a}: {name}" for name in sorted(a.keys() - b.keys())]
    lines += [f"only in {name_b}: {name}" for name in sorted(b.keys() - a.keys())]
    lines += [f"contents differ: {name}" for name in sorted(a.keys() & b.keys()) if a[name] != b[name]]
    return lines


def main(argv: List[str]) -> int:
    if len(argv) != 2:
        print("usage: compare_wheels.py FROM_SDIST.whl FROM_TREE.whl", file=sys.stderr)
        return 2
    found = differences(*argv)
    if found:
        print(f"compare_wheels: the wheels differ ({len(found)} files):", file=sys.stderr)
        print("\n".join(f"  {line}" for line in found), file=sys.stderr)
        return 1
    print(f"compare_wheels: {argv[0]} and {argv[1]} hold the same {len(members(argv[0]))} files, byte for byte")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
