"""Two gloo/CPU processes with FSDP-wrapped networks give the single-process loss and generator gradients."""

import torch
import torch.multiprocessing as mp

from tests.adapters import dist_worker


def test_two_processes_match_one(tmp_path):
    out_file = tmp_path / "rank0.pt"
    mp.spawn(dist_worker.run, args=(2, str(tmp_path / "init"), str(out_file)), nprocs=2, join=True)
    results = torch.load(out_file)
    for host in sorted(dist_worker.HOSTS):
        loss, msm, grads = dist_worker.generator_step(host, range(dist_worker.BATCH))
        got = results[host]
        torch.testing.assert_close(got["loss"], loss, rtol=1e-6, atol=0)
        torch.testing.assert_close(got["msm_loss"], msm, rtol=1e-6, atol=0)
        assert msm > 0
        assert len(got["grads"]) == len(grads)
        for g_dist, g_single in zip(got["grads"], grads):
            torch.testing.assert_close(g_dist, g_single, rtol=1e-5, atol=1e-7)
