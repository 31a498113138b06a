"""The built-in CPU toy distillation behind ``msm-demo``.

A tiny ``WanTransformer3DModel`` teacher is trained by flow matching on synthetic videos
(a static textured background with a subtle moving blob, the regime of the paper's eq. 7),
then distilled into a one-step generator by a compact DMD trainer that follows CausVid's
interface, once as plain DMD and once with MSM added through :func:`msm_plugin.wrap_trainer`.

Modules: :mod:`.data` (videos), :mod:`.teacher` (teacher, sampler, cache), :mod:`.dmd`
(``ToyDMD``), :mod:`.trainer` (``ToyTrainer``), :mod:`.experiment` (the protocol),
:mod:`.report` (table, videos, plots) and :mod:`.cli` (``msm-demo``).
"""
