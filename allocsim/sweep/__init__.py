"""Sweeps: one experiment file run over a grid of values, each point several times.

``allocsim sweep CONFIG -o DIR`` reads the file's ``sweep:`` section
(:mod:`allocsim.sweep.spec`), plans one run per point and replicate
(:mod:`allocsim.sweep.plan`), runs them on local processes or a Dask cluster
(:mod:`allocsim.sweep.executors`), and writes ``sweep.parquet`` (one row per run and
metric, :mod:`allocsim.sweep.metrics`) and ``summary.csv`` (mean, standard deviation and a
95 % confidence interval per point and metric, :mod:`allocsim.sweep.stats`) into ``DIR``
(:mod:`allocsim.sweep.runner`).

A ``study:`` section (:mod:`allocsim.sweep.study`) names the questions the sweep
answers; the study runs a fresh-box baseline beside the sweep
(:mod:`allocsim.sweep.baseline`), adds per-node callers' metrics
(:mod:`allocsim.sweep.pernode`), answers each question from the per-point statistics
(:mod:`allocsim.sweep.answers`) and writes ``study.md`` (:mod:`allocsim.sweep.studymd`,
:mod:`allocsim.sweep.studyrun`) and ``study.json`` (:mod:`allocsim.sweep.studyjson`).

The command then builds the sweep's report, ``DIR/report/study.pdf`` and its PNGs
(:mod:`reports.study`), unless ``--no-report``.
"""
