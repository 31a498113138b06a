"""Build hook: ship the top-level ``patches/`` and ``examples/configs/`` inside the package.

The repository keeps one copy of each file where the README points; the wheel gets them under
``msm_plugin/_shipped/`` (read by :mod:`msm_plugin.shipped`). Everything else is in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

# repository folder -> (folder under msm_plugin/_shipped, file pattern); msm_plugin.shipped.KINDS names the same pairs
SHIPPED = {"patches": ("patches", ("*.patch",)), "examples/configs": ("configs", ("*.yaml", "*.py"))}


class BuildPyWithShippedFiles(build_py):
    def run(self):
        super().run()
        for source, (target, patterns) in SHIPPED.items():
            files = sorted(path for pattern in patterns for path in Path(source).glob(pattern))
            if not files:  # an sdist without them (see MANIFEST.in) would build a wheel that lacks them
                raise FileNotFoundError(f"no {' or '.join(patterns)} in {source}/ to ship")
            for path in files:
                destination = Path(self.build_lib, "msm_plugin", "_shipped", target, path.name)
                self.mkpath(str(destination.parent))
                self.copy_file(str(path), str(destination))


setup(cmdclass={"build_py": BuildPyWithShippedFiles})
