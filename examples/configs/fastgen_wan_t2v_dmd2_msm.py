"""FastGen DMD2 on Wan 2.1 T2V 1.3B + Motion Score Matching (an experiment config for FastGen's train.py).

FastGen's fastgen/configs/experiments/WanT2V/config_dmd2.py unchanged, except that
``model_class`` builds msm-plugin's subclass of ``DMD2Model`` with the extra losses as keyword
arguments (validated before any network is built). FastGen imports ``--config`` as a module
named after its path inside the checkout (an absolute path fails), so place it there first;
this prints the command to run:

    msm-plugin config fastgen_wan_t2v_dmd2_msm --into /path/to/FastGen
    cd /path/to/FastGen && torchrun --nproc_per_node=8 train.py --config=msm_configs/fastgen_wan_t2v_dmd2_msm.py - trainer.fsdp=True

and override an option like any other key: ``model_class.msm.lam=0.25`` (an unknown keyword,
e.g. ``+model_class.lam=0.25``, is refused with a did-you-mean).
For CausVid / Self-Forcing use MSMCausVidModel / MSMSelfForcingModel on their experiment configs.
"""

import fastgen.configs.experiments.WanT2V.config_dmd2 as upstream
from fastgen.utils import LazyCall as L

from msm_plugin.hosts.fastgen import MSMDMD2Model


def create_config():
    config = upstream.create_config()
    config.model_class = L(MSMDMD2Model)(
        config=None,
        extra_losses=["msm"],
        msm=dict(
            lam=0.5,  # not given in the paper; sweep it
            normalization="motion",  # or "dmd": FastGen's per-sample normaliser
            order=1,
            timestep_policy="strict",  # FastGen's score time t is one per sample: always holds
        ),
    )
    config.log_config.group = "wan_dmd2_msm"
    return config
