"""The built-in CPU toy distillation behind ``msm-demo``.

Synthetic videos (a static smooth background and a faint blob moving at a known velocity, the
regime of the paper's eq. 7) form a finite data set whose exact posterior-mean denoiser is the
teacher. A compact DMD trainer with CausVid's interface distils it into a one-step generator;
critic and generator start as the teacher plus zero-initialised tiny diffusers Wan residuals.
MSM reaches the trainer only through :func:`msm_plugin.wrap_trainer`. The blob's velocity is
known, so motion is measured against the ground truth.

Modules: :mod:`.data` (videos, the finite set), :mod:`.teacher` (exact teacher, sampler, Wan
score wrapper), :mod:`.residual` (teacher + Wan residual), :mod:`.dmd` (``ToyDMD``),
:mod:`.trainer` (``ToyTrainer``), :mod:`.tracking` (ground-truth motion metrics),
:mod:`.experiment` (arms, seeds, checkpoints), :mod:`.report` (tables, videos, tensors, plots)
and :mod:`.cli` (``msm-demo``).
"""
