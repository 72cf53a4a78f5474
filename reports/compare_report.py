"""``allocsim compare``: build the comparison report of two or more runs or a sweep."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from matplotlib.figure import Figure

from reports.compare import MetricRow, Variant, load_variants
from reports.compare_figures import _value, series_pages, table_pages, write_metric_csv
from reports.render import write_report
from reports.style import new_figure

PDF_NAME = "compare.pdf"
CSV_NAME = "compare.csv"
HEADLINES = 14


def headline_differences(variants: list[Variant], rows: list[MetricRow]) -> list[str]:
    """The metrics that moved most from the baseline, biggest relative change first.

    A difference is listed when its 95 % interval excludes 0, or, without replicates,
    when it is not 0; each line says which.
    """
    found = []
    for row in rows:
        base = row.means[0]
        for i in range(1, len(variants)):
            diff, low, high = row.diffs[i], row.diff_lows[i], row.diff_highs[i]
            if math.isnan(diff) or diff == 0:
                continue
            sure = not math.isnan(low) and (low > 0 or high < 0)
            if not math.isnan(low) and not sure:
                continue
            rel = abs(diff) / abs(base) if base and not math.isnan(base) else math.inf
            why = "95 % CI excludes 0" if sure else "single runs: no interval"
            found.append((rel, f"{row.metric}: {_value(row.metric, base)} -> "
                               f"{_value(row.metric, row.means[i])} in variant {i + 1} ({why})"))
    found.sort(key=lambda item: -item[0] if not math.isinf(item[0]) else -1e300)
    lines = [text for _, text in found[:HEADLINES]]
    return lines or ["no metric differs from the baseline beyond its 95 % interval"]


def compare_cover(variants: list[Variant], rows: list[MetricRow]) -> Figure:
    """Page 1: the variants (baseline first) and the differences that stand out."""
    fig = new_figure(margins=False)
    fig.text(0.04, 0.965, "allocsim comparison", fontsize=18, weight="bold", va="top")
    lines = []
    for i, v in enumerate(variants):
        seeds = ", ".join(str(r.manifest["seed"]) for r in v.runs[:8])
        more = "" if len(v.runs) <= 8 else f", ... ({len(v.runs)} in all)"
        lines.append(textwrap.fill(f"{i + 1}. {v.label}{' (baseline)' if i == 0 else ''}: "
                                   f"{len(v.runs)} run(s), seeds {seeds}{more}", 120,
                                   subsequent_indent="     "))
    fig.text(0.04, 0.90, "Variants", fontsize=11, weight="bold", va="top")
    body = "\n".join(lines)
    fig.text(0.06, 0.87, body, fontsize=8.5, va="top", family="monospace", gid="variants")
    y = 0.87 - 0.03 - (body.count("\n") + 1) * 0.024
    fig.text(0.04, y, "What differs most from the baseline", fontsize=11, weight="bold",
             va="top")
    fig.text(0.06, y - 0.03, "\n".join(textwrap.fill(t, 125, subsequent_indent="    ")
                                       for t in headline_differences(variants, rows)),
             fontsize=8.5, va="top", family="monospace", gid="headlines")
    return fig


def build_compare_report(paths: list[Path], out_dir: Path) -> list[Path]:
    """Write ``compare.pdf``, a PNG per figure and ``compare.csv`` into ``out_dir``.

    Raises:
        reports.load.ReportInputError: A run or sweep directory is bad, or there are
            fewer than two runs. Nothing is written then.
    """
    variants = load_variants([Path(p) for p in paths])
    tables, rows = table_pages(variants)
    pages = [("", compare_cover(variants, rows)), *series_pages(variants), *tables]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = write_report(out_dir, pages, "allocsim comparison", pdf_name=PDF_NAME)
    write_metric_csv(out_dir / CSV_NAME, variants, rows)
    return [*written, out_dir / CSV_NAME]
