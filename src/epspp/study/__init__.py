"""``epspp study``: controlled experiments on the synthetic dataset that no real dataset allows.

- ``saliency-errors``: the same images and masks with only the saliency maps changed, one error type at a time
  (missing class, missing object part, false coverage) at each rate; CAM, EPS and EPS++.
- ``labeled-fraction``: segmentation val mIoU of labelled-only, SSSS and WSSS training per fraction of labelled
  images, on EPS++'s and on EPS's pseudo-masks.
- ``readings``: EPS++ under both readings of IRD's B() and without PAMR, against CAM and EPS, on the demo's saliency.
- ``confirm``: a confirmatory study that runs exactly what a committed plan file lists (``confirm``).

Every study runs in each regime of the demo (``pretrained``: stage 0 once per seed, every fit of the seed starts
from it; ``scratch``), every fit and predict as an ``epspp`` subprocess (``runner``), resumable. Each reports train
pseudo-masks at the configured background threshold and at the one chosen on val, never on train, and each claim as
a paired per-seed difference with its 95% t interval, an exact sign-flip p, Holm's correction over its family and a
verdict (``stats``). Modules: ``grid`` (what to train), ``runner`` (running and scoring), ``stats`` (intervals,
tests, correction, verdicts), ``studies`` (rows, tables, claims), ``confirm`` (the plan file and its tables),
``figures``; its command line is ``epspp.cli.study``.
"""
