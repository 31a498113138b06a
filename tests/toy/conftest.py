"""Shared fixtures for the toy-demo tests: one quick ``msm-demo`` run and a tiny random teacher."""

from __future__ import annotations

import json

import pytest
import torch

from msm_plugin.toy.data import ToyDataConfig
from msm_plugin.toy.teacher import ClassTextEncoder, FlowMatchScheduler, TeacherConfig, ToyDiffusionWrapper, build_score_model

TINY_DATA = ToyDataConfig(num_frames=4, size=8, speeds=(1.0,))
TINY_TEACHER = TeacherConfig(num_layers=1, num_heads=2, head_dim=8, ffn_dim=16, text_dim=8, freq_dim=16,
                             train_steps=4, batch_size=4, sample_steps=2)


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory, toy_teacher_cache):
    """The ``--quick`` preset run once, end to end: ``(out_dir, results, teacher_was_cached_before)``."""
    from msm_plugin.toy.cli import main

    out = tmp_path_factory.mktemp("quick-out")
    cache = toy_teacher_cache
    had_teacher = any(cache.iterdir())  # the notebooks may have trained the shared quick teacher first
    # One thread: this checks results, not speed, and a busy CI box punishes oversubscribed threads.
    assert main(["--quick", "--out", str(out), "--cache-dir", str(cache), "--no-progress", "--threads", "1"]) == 0
    return out, json.loads((out / "results.json").read_text()), had_teacher


@pytest.fixture()
def tiny_teacher():
    """An untrained tiny teacher (score wrapper, text encoder) for interface tests."""
    torch.manual_seed(0)
    score = ToyDiffusionWrapper(build_score_model(TINY_DATA, TINY_TEACHER), FlowMatchScheduler())
    encoder = ClassTextEncoder(TINY_DATA.num_conditions, TINY_TEACHER.text_dim)
    return score.eval().requires_grad_(False), encoder.requires_grad_(False)
