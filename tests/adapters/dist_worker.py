"""Worker for the 2-process test: one rank of a gloo/CPU FSDP data-parallel DMD+MSM generator step.

Run by ``torch.multiprocessing.spawn`` from ``test_distributed.py``; importing it does nothing.
"""

import os

import torch
import torch.distributed as dist
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

from msm_plugin.adapters import wrap_trainer
from tests.adapters.standins import SHAPE, CausVidDMD, SelfForcingDMD, make_config, text_dicts

HOSTS = {"causvid": CausVidDMD, "self_forcing": SelfForcingDMD}

BATCH = 4  # the whole batch; each of the 2 ranks takes half
LAM = 0.8


def generator_step(host, samples, distributed=False):
    """One wrapped generator_loss + backward on the given sample indices.

    With ``distributed``, the generator and both score networks are wrapped in FSDP (as upstream
    CausVid's Trainer does, before the plugin wraps the DMD), which averages the gradients over
    ranks. Returns the loss, the msm_loss log and the generator's full (unsharded) gradients.
    """
    dmd = HOSTS[host](make_config(fake_guidance_scale=1.0))
    if distributed:
        dmd.generator, dmd.real_score, dmd.fake_score = (
            FSDP(m, device_id=torch.device("cpu"), use_orig_params=True)
            for m in (dmd.generator, dmd.real_score, dmd.fake_score)
        )
    wrap_trainer(dmd, lam=LAM)
    dmd.sample_seeds = list(samples)
    cond, uncond = text_dicts(batch=BATCH)
    cond = {"prompt_embeds": cond["prompt_embeds"][list(samples)]}
    uncond = {"prompt_embeds": uncond["prompt_embeds"][list(samples)]}
    shape = [len(samples), *SHAPE[1:]]
    loss, log = dmd.generator_loss(shape, cond, uncond, None)
    loss.backward()
    if distributed:
        with FSDP.summon_full_params(dmd.generator, with_grads=True):
            grads = [p.grad.detach().clone() for p in dmd.generator.parameters()]
    else:
        grads = [p.grad.detach().clone() for p in dmd.generator.parameters()]
    return loss.detach(), log["msm_loss"].detach(), grads


def run(rank, world_size, init_file, out_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        per_rank = BATCH // world_size
        results = {}
        for host in sorted(HOSTS):
            loss, msm, grads = generator_step(host, range(rank * per_rank, (rank + 1) * per_rank), distributed=True)
            # the hosts' losses are means over equal-sized shards: their average is the batch mean
            for value in (loss, msm):
                dist.all_reduce(value)
                value /= world_size
            results[host] = {"loss": loss, "msm_loss": msm, "grads": grads}
        if rank == 0:
            torch.save(results, out_file)
    finally:
        dist.destroy_process_group()
    # Leave without the interpreter's teardown: about 1 run in 10, a rank that had saved its
    # results and destroyed the group still aborted in a C++ static destructor at exit
    # ("terminate called without an active exception", SIGABRT), failing the test for nothing.
    os._exit(0)
