"""Reports on allocsim run directories: a PDF and PNG figures of one run.

``build_report(run_dir)`` reads the traces a run wrote (layout in
:mod:`simcore.formats.trace_schema`) and writes ``<run_dir>/report/``. This package is the only
place that uses pandas and matplotlib; ``simcore`` never imports it.
:func:`reports.study.build_study_report` does the same for a sweep's directory: its
``report/study.pdf`` and PNGs.
"""

from reports.build import build_report
from reports.load import ReportInputError

__all__ = ["ReportInputError", "build_report"]
