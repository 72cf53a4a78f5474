"""Reports on allocsim run directories: PDFs and PNG figures.

``build_report(run_dir)`` reads the traces a run wrote (layout in
:mod:`simcore.formats.trace_schema`) and writes ``<run_dir>/report/``: a cover with the
question and its answers, then ten figures (:mod:`reports.build`).
:func:`reports.compare_report.build_compare_report` overlays runs (baseline against
variants, with intervals over replicates); :func:`reports.study.build_study_report` does a
sweep's directory: its ``report/study.pdf`` and PNGs. This package is the only place that
uses pandas and matplotlib; ``simcore`` never imports it.
"""

from reports.build import build_report
from reports.load import ReportInputError

__all__ = ["ReportInputError", "build_report"]
