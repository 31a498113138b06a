"""Worker for the 2-process test: one rank of a gloo/CPU data-parallel DMD+MSM generator step.

Run by ``torch.multiprocessing.spawn`` from ``test_distributed.py``; importing it does nothing.
"""

import torch
import torch.distributed as dist

from msm_plugin.adapters import wrap_trainer
from tests.adapters.standins import SHAPE, CausVidDMD, SelfForcingDMD, Sharded, make_config, text_dicts

HOSTS = {"causvid": CausVidDMD, "self_forcing": SelfForcingDMD}

BATCH = 4  # the whole batch; each of the 2 ranks takes half
LAM = 0.8


def generator_step(host, samples, distributed=False):
    """One wrapped generator_loss + backward on the given sample indices.

    Returns the loss, the msm_loss log and the generator's gradients (averaged over ranks when
    ``distributed``).
    """
    dmd = HOSTS[host](make_config(fake_guidance_scale=1.0))
    if distributed:  # like upstream's FSDP: wrappers replace the DMD's networks before training
        dmd.generator, dmd.real_score, dmd.fake_score = (Sharded(m) for m in (dmd.generator, dmd.real_score, dmd.fake_score))
    wrap_trainer(dmd, lam=LAM)
    dmd.sample_seeds = list(samples)
    cond, uncond = text_dicts(batch=BATCH)
    cond = {"prompt_embeds": cond["prompt_embeds"][list(samples)]}
    uncond = {"prompt_embeds": uncond["prompt_embeds"][list(samples)]}
    shape = [len(samples), *SHAPE[1:]]
    loss, log = dmd.generator_loss(shape, cond, uncond, None)
    loss.backward()
    grads = [p.grad.detach().clone() for p in dmd.generator.parameters()]
    if distributed:
        # What DDP/FSDP do to gradients: average over ranks. (DistributedDataParallel itself would
        # import torch._dynamo, ~3 s per process, for the same all-reduce.)
        for grad in grads:
            dist.all_reduce(grad)
            grad /= dist.get_world_size()
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
