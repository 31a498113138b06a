"""Shared fixtures for the toy-demo tests: one quick ``msm-demo`` run, a tiny exact teacher, a tiny Wan score."""

from __future__ import annotations

import json

import pytest
import torch

from msm_plugin.toy.data import ToyDataConfig, make_dataset
from msm_plugin.toy.networks import ResidualConfig
from msm_plugin.toy.teacher import ClassTextEncoder, ExactTeacher, FlowMatchScheduler, NetConfig, ToyDiffusionWrapper, build_score_model

TINY_DATA = ToyDataConfig(num_frames=4, size=8, speeds=(1.0,), videos_per_condition=3)
TINY_NET = NetConfig(num_layers=1, num_heads=2, head_dim=8, ffn_dim=16, text_dim=8, freq_dim=16)
# Small residuals for the trainer tests (text_dim = TINY_NET.text_dim: the encoder fixtures use it).
TINY_GENERATOR = ResidualConfig(kind="mlp", width=16, text_dim=8)
TINY_CRITIC = ResidualConfig(kind="mlp", width=16, reads_base=True, text_dim=8)


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """The ``--quick`` preset run once, end to end: ``(out_dir, results)``."""
    from msm_plugin.toy.cli import main

    out = tmp_path_factory.mktemp("quick-out")
    # One thread: this checks results, not speed, and a busy CI box punishes oversubscribed threads.
    assert main(["--quick", "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    return out, json.loads((out / "results.json").read_text())


@pytest.fixture()
def tiny_exact():
    """The exact teacher of TINY_DATA's finite set and a text encoder: ``(teacher, encoder)``."""
    videos, labels = make_dataset(TINY_DATA)
    torch.manual_seed(0)
    encoder = ClassTextEncoder(TINY_DATA.num_conditions, TINY_NET.text_dim).requires_grad_(False)
    return ExactTeacher(videos, labels, TINY_DATA.num_conditions), encoder


@pytest.fixture()
def tiny_teacher():
    """An untrained tiny Wan score wrapper and a text encoder, for interface tests."""
    torch.manual_seed(0)
    score = ToyDiffusionWrapper(build_score_model(TINY_DATA, TINY_NET), FlowMatchScheduler())
    encoder = ClassTextEncoder(TINY_DATA.num_conditions, TINY_NET.text_dim)
    return score.eval().requires_grad_(False), encoder.requires_grad_(False)
