"""The built-in CPU toy distillation behind ``msm-demo``.

Synthetic videos (a static smooth background and a blob moving at a known velocity on a torus,
the regime of the paper's eq. 7) form a finite data set whose exact posterior-mean denoiser is
the teacher. A compact DMD trainer with CausVid's interface distils it into a one-step
generator; critic and generator start as the teacher plus zero-initialised residual networks.
Extra losses (MSM and any other registered one) reach the trainer only through its config's
``extra_losses``, installed by :func:`msm_plugin.adapters.apply_extra_losses` as in a patched
CausVid trainer. The blob's velocity is known, so motion is measured against the ground truth.

Modules: :mod:`.data` (videos, the finite set), :mod:`.teacher` (exact teacher, sampler, Wan
score wrapper), :mod:`.networks` (the residuals: MLP, convolution, Wan), :mod:`.dmd`
(``ToyDMD``), :mod:`.trainer` (``ToyTrainer``), :mod:`.tracking` (ground-truth motion metrics),
:mod:`.checks` (student checks, paired verdicts), :mod:`.experiment` (arms, seeds,
checkpoints), :mod:`.regimes` (where DMD loses motion), :mod:`.benchmark` (every motion loss
against DMD), :mod:`.report` (tables, videos, tensors, plots) and :mod:`.cli` (``msm-demo``).
"""
