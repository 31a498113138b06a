"""A stand-in CausVid checkout: only the lines ``patches/causvid-extra-losses.patch`` anchors on.

Used by tests/test_cli.py and by .ci/check_wheel.py (loaded by path, so the installed wheel is
what gets tested there). Written for this project; no upstream code.
"""

from pathlib import Path

SCRIPT = '''"""Stand-in for a DMD training entry script."""
import argparse
import os

class Trainer:
    def __init__(self, config):
        self.config = config
        self.max_grad_norm = 10.0
        self.previous_time = None

    def log(self, steps):
        for step in steps:
            if step % 2 == 0:
                wandb_loss_dict = dict(
                    generator_loss=0.0,
                )

        return wandb_loss_dict


def main():
    args = argparse.Namespace(no_visualize=True)
    config = argparse.Namespace()
    config.no_visualize = args.no_visualize

    return Trainer(config)
'''


def write_causvid_standin(root) -> Path:
    """Write ``root/causvid/train_distillation.py`` and return it."""
    script = Path(root) / "causvid" / "train_distillation.py"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(SCRIPT)
    return script
