"""What the report's figures and tables show equals what the trace says.

A small 2-node run that reclaims, compacts, pollutes pageblocks and fails huge-page
requests (tests/data/reports/story.yaml) is simulated once. Every check reads the run's
files with pyarrow and plain Python, independently of ``reports``, and compares the
result with the data inside the drawn matplotlib objects (found by their ``gid``) or the
text of a table.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from allocsim.run import simulate
from reports.build import FIGURE_STEMS, draw_figures
from reports.cover import cover_lines
from reports.load import RunData, load_run
from reports.style import format_ns
from simcore.formats import trace_schema as ts
from simcore.mm.gfp import format_gfp
from workloads.registry import load_experiment

STORY = Path(__file__).parent.parent / "data" / "reports" / "story.yaml"
PAGE = 4096
UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = load_experiment(STORY)
    result = simulate(cfg, tmp_path_factory.mktemp("story"), report=False)
    assert result.status == "ok"
    return Path(result.run_dir)


@pytest.fixture(scope="module")
def data(run: Path) -> RunData:
    return load_run(run)


@pytest.fixture(scope="module")
def pages(data: RunData) -> dict[str, Figure]:
    return {stem or "cover": fig for stem, fig in draw_figures(data)}


def gids(fig: Figure) -> dict[str, list[Any]]:
    """Every artist of the figure with a gid, by gid."""
    out: dict[str, list[Any]] = defaultdict(list)
    for artist in [*fig.texts, *(c for ax in fig.axes for c in ax.get_children())]:
        if artist.get_gid():
            out[artist.get_gid()].append(artist)
    return out


def table(run: Path, rel: str) -> dict[str, list[Any]]:
    return pq.read_table(run / rel).to_pydict()


def stair_values(artist: Any) -> np.ndarray:
    """The values a step line shows (its last point repeats the last value); a step fill
    keeps what it was drawn from."""
    if isinstance(artist, Line2D):
        return np.asarray(artist.get_ydata(), dtype=float)[:-1]
    return np.asarray(artist.step_data[0], dtype=float)


def stair_edges(artist: Any) -> np.ndarray:
    if isinstance(artist, Line2D):
        return np.asarray(artist.get_xdata(), dtype=float)
    return np.asarray(artist.step_data[1], dtype=float)


def axis_bytes(artist: Any) -> int:
    """Bytes per y unit of the axes an artist is on (its label names the unit)."""
    label = artist.axes.get_ylabel().split()[0]
    return UNITS[label]


def raw_buddyinfo(run: Path) -> dict[tuple[int, str], dict[str, Any]]:
    """Per zone: snapshot times and {migratetype: {(order, time): nr_free}} from the file."""
    t = table(run, ts.BUDDYINFO_FILE)
    out: dict[tuple[int, str], dict[str, Any]] = {}
    for time, nid, zone, mt, order, n in zip(t["time_ns"], t["nid"], t["zone"],
                                             t["migratetype"], t["order"], t["nr_free"],
                                             strict=True):
        z = out.setdefault((nid, zone), {"times": set(), "mt": defaultdict(dict)})
        z["times"].add(time)
        z["mt"][mt][(order, time)] = z["mt"][mt].get((order, time), 0) + n
    return out


def totals(zone: dict[str, Any], max_order: int) -> list[list[int]]:
    """Per snapshot (sorted), free blocks per order summed over migratetypes."""
    return [[sum(per.get((o, t), 0) for per in zone["mt"].values())
             for o in range(max_order + 1)] for t in sorted(zone["times"])]


# -- figure 1 ---------------------------------------------------------------------------

def test_free_block_heatmaps_hold_pagetypeinfo_counts(run: Path,
                                                      pages: dict[str, Figure]) -> None:
    drawn = gids(pages["01_free_blocks"])
    raw = raw_buddyinfo(run)
    max_order = max(o for z in raw.values() for per in z["mt"].values() for o, _ in per)
    checked = 0
    for (nid, zone), z in raw.items():
        times = sorted(z["times"])
        grids = totals(z, max_order)
        untouched = all(g == grids[0] for g in grids)
        names = [g for g in drawn if g.startswith(f"free_blocks {nid} {zone} ")]
        assert bool(names) != untouched, (nid, zone)  # untouched zones are collapsed
        for mt, per in z["mt"].items():
            gid = f"free_blocks {nid} {zone} {mt}"
            if untouched or not any(per.values()):
                continue
            (mesh,) = drawn[gid]
            shown = np.ma.filled(mesh.get_array(), 0).reshape(max_order + 1, len(times))
            expect = [[per.get((o, t), 0) for t in times] for o in range(max_order + 1)]
            assert shown.tolist() == expect
            checked += 1
    assert checked >= 3


# -- figure 2 ---------------------------------------------------------------------------

def test_free_memory_steps_are_zonestat_pages_in_binary_units(run: Path,
                                                              pages: dict[str, Figure]) -> None:
    drawn = gids(pages["02_free_memory"])
    t = table(run, ts.ZONESTAT_FILE)
    zones = {(n, z) for n, z in zip(t["nid"], t["zone"], strict=True)}
    shown = 0
    for nid, zone in zones:
        rows = sorted((time, i) for i, (time, n, z) in
                      enumerate(zip(t["time_ns"], t["nid"], t["zone"], strict=True))
                      if (n, z) == (nid, zone))
        for column in ("nr_free_pages", "wmark_min", "wmark_low", "wmark_high", "pcp_pages"):
            gid = f"{column} {nid} {zone}"
            if gid not in drawn:
                continue
            (art,) = drawn[gid]
            pages_shown = stair_values(art) * axis_bytes(art) / PAGE
            assert np.allclose(pages_shown, [t[column][i] for _, i in rows]), gid
            edges = stair_edges(art)
            assert np.allclose(edges[:-1], [time / 1e9 for time, _ in rows])
            shown += 1
    assert shown >= 10


# -- figure 3 ---------------------------------------------------------------------------

def _unusable(nr_free: list[int], order: int) -> int:
    free = sum(n << o for o, n in enumerate(nr_free))
    if not free:
        return 1000
    suitable = sum(n << (o - order) for o, n in enumerate(nr_free) if o >= order)
    return (free - (suitable << order)) * 1000 // free


def _extfrag(nr_free: list[int], order: int) -> int:
    blocks = sum(nr_free)
    if not blocks:
        return 0
    if any(n for o, n in enumerate(nr_free) if o >= order):
        return -1000
    free = sum(n << o for o, n in enumerate(nr_free))
    return 1000 - (1000 + free * 1000 // (1 << order)) // blocks


def _present(run: Path) -> dict[tuple[int, str], int]:
    present, key = {}, None
    for line in (run / "zoneinfo.txt").read_text().splitlines():
        head = re.match(r"Node (\d+), zone\s+(\S+)", line)
        if head:
            key = (int(head.group(1)), head.group(2))
        elif key and line.split()[:1] == ["present"]:
            present[key] = int(line.split()[1])
    return present


def test_fragmentation_panels_follow_the_kernel_formulas(run: Path,
                                                         pages: dict[str, Figure]) -> None:
    drawn = gids(pages["03_fragmentation"])
    raw = raw_buddyinfo(run)
    max_order = max(o for z in raw.values() for per in z["mt"].values() for o, _ in per)
    present = _present(run)
    node_present = Counter()
    for (nid, _), pages_ in present.items():
        node_present[nid] += pages_
    scores: dict[int, np.ndarray] = {}
    for (nid, zone), z in raw.items():
        grids = totals(z, max_order)
        if f"unusable_9 {nid} {zone}" not in drawn:
            assert all(g == grids[0] for g in grids)  # only untouched zones are left out
            continue
        for gid, expect in ((f"unusable_9 {nid} {zone}", [_unusable(g, 9) for g in grids]),
                            (f"extfrag_4 {nid} {zone}", [_extfrag(g, 4) for g in grids]),
                            (f"extfrag_9 {nid} {zone}", [_extfrag(g, 9) for g in grids])):
            (art,) = drawn[gid]
            assert np.rint(stair_values(art) * 1000).astype(int).tolist() == expect, gid
        extfrag_pct = [(sum(n << o for o, n in enumerate(g))
                        - sum(n << o for o, n in enumerate(g) if o >= 9)) * 100
                       // max(sum(n << o for o, n in enumerate(g)), 1) for g in grids]
        weighted = np.array([present[(nid, zone)] * e // (node_present[nid] + 1)
                             for e in extfrag_pct])
        scores[nid] = scores.get(nid, 0) + weighted
    for nid, expect in scores.items():
        (art,) = drawn[f"score node {nid}"]
        assert stair_values(art).astype(int).tolist() == expect.tolist()
    assert scores


# -- figures 4 and 5 --------------------------------------------------------------------

def test_pageblock_map_cells_are_the_end_of_run_pageblocks(run: Path,
                                                           pages: dict[str, Figure]) -> None:
    fig = pages["04_pageblock_map"]
    drawn = gids(fig)
    t = table(run, ts.PAGEBLOCKS_FILE)
    for nid in sorted(set(t["nid"])):
        rows = sorted((pfn, mt, census, mixed) for pfn, n, mt, census, mixed in zip(
            t["pfn"], t["nid"], t["migratetype"], t["census"], t["mixed"], strict=True)
            if n == nid)
        (image,) = drawn[f"map node {nid}"]
        cells = np.asarray(image.get_array()).ravel()
        types = [mt for mt in ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA",
                               "Isolate") if mt in set(t["migratetype"])]
        expect = [types.index(mt) * 2 + (census == ts.CENSUS_FREE)
                  for _, mt, census, _ in rows]
        assert cells[: len(rows)].tolist() == expect
        assert (cells[len(rows):] == -1).all()
        width = np.asarray(image.get_array()).shape[1]
        (marks,) = drawn[f"mixed node {nid}"]
        where = sorted(int(r) * width + int(c) for c, r in marks.get_offsets())
        assert where == [i for i, row in enumerate(rows) if row[3]]
        title = image.axes.get_title(loc="left")
        assert f"{len(rows):,} pageblocks" in title
        assert f"{sum(row[3] for row in rows):,} mixed" in title


def test_polluted_lines_count_each_callers_charges(run: Path, data: RunData,
                                                   pages: dict[str, Figure]) -> None:
    drawn = gids(pages["05_polluted_pageblocks"])
    spans = table(run, ts.SPANS_FILE)
    charges = Counter(c for n, c in zip(spans["name"], spans["caller"], strict=True)
                      if n == ts.SPAN_PAGEBLOCK_POLLUTED)
    assert charges == Counter(data.summary["pollution"]["charged_by_caller"])
    for caller, count in charges.items():
        (art,) = drawn[f"polluted {caller}"]
        values = stair_values(art)
        assert values[0] == 0 and values[-1] == count
        assert (np.diff(values) == 1).all()  # one step per charge
    zs = table(run, ts.ZONESTAT_FILE)
    per_time = Counter()
    for time, mixed in zip(zs["time_ns"], zs["pageblocks_mixed"], strict=True):
        per_time[time] += mixed
    (total,) = drawn["mixed total"]
    assert stair_values(total).tolist() == [per_time[t] for t in sorted(per_time)]


# -- figures 6, 7, 8 --------------------------------------------------------------------

def _allocs(run: Path) -> list[dict[str, Any]]:
    t = table(run, ts.EVENTS_FILE)
    keys = ("time_ns", "caller", "order", "gfp", "outcome", "path", "stage", "latency_ns")
    return [dict(zip(keys, row, strict=True)) for row, event in
            zip(zip(*(t[k] for k in keys), strict=True), t["event"], strict=True)
            if event == ts.MM_PAGE_ALLOC]


def test_rates_are_events_per_second_in_each_bin(run: Path, pages: dict[str, Figure]) -> None:
    drawn = gids(pages["06_rates"])
    allocs = _allocs(run)
    checked = 0
    for gid, (art,) in drawn.items():
        if not gid.startswith("rate "):
            continue
        _, caller, order, outcome = gid.split(" ")
        edges = stair_edges(art)
        times = [a["time_ns"] / 1e9 for a in allocs if a["caller"] == caller
                 and a["order"] == int(order) and a["outcome"] == outcome]
        counts, _ = np.histogram(np.minimum(times, edges[-1] - 1e-12), bins=edges)
        assert np.allclose(stair_values(art) * (edges[1] - edges[0]), counts), gid
        checked += 1
    assert checked >= 5
    assert any(g.endswith(" fail") for g in drawn)


def test_outcome_bars_count_requests_by_caller_order_and_gfp(run: Path,
                                                             pages: dict[str, Figure]) -> None:
    (ax,) = pages["07_outcomes"].axes
    counts: Counter[tuple[str, int, str, str]] = Counter()
    for a in _allocs(run):
        kind = ("fallback" if a["path"] == ts.PATH_FALLBACK else
                "failure" if a["outcome"] == ts.OUTCOME_FAIL else "success")
        counts[(a["caller"], a["order"], format_gfp(a["gfp"]), kind)] += 1
    rows = sorted({k[:3] for k in counts})
    labels = [t.get_text() for t in ax.get_yticklabels()]  # the first row is drawn on top
    assert labels == [f"{c} · order {o} · {g}" if len(f"{c} · order {o} · {g}") < 70
                      else f"{c} · order {o} · {g}"[:67] + "..." for c, o, g in rows]
    for container in ax.containers:
        kind = container.get_label()
        shown = np.nan_to_num(np.asarray(container.datavalues, dtype=float)).astype(int)
        assert shown.tolist() == [counts[(*row, kind)] for row in rows], kind


def _nearest_rank(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def test_latency_table_and_cdf(run: Path, pages: dict[str, Figure]) -> None:
    drawn = gids(pages["08_latency"])
    allocs = [a for a in _allocs(run) if a["latency_ns"] >= 0]
    (text,) = drawn["latency table"]
    lines = {" ".join(line.split()[:2]): line.split()[2:]
             for line in text.get_text().splitlines()[1:]}
    for key in ("path", "stage"):
        for name in {a[key] for a in allocs}:
            lat = [a["latency_ns"] for a in allocs if a[key] == name]
            row = lines[f"{key} {name}"]
            assert int(row[0].replace(",", "")) == len(lat)
            shown = [_parse_ns(row[i], row[i + 1]) for i in (1, 3, 5, 7)]
            expect = [_nearest_rank(lat, q) for q in (0.5, 0.99, 0.999)] + [max(lat)]
            assert np.allclose(shown, expect, rtol=5e-3), (key, name)
            if key == "path":
                (line,) = drawn[f"cdf {name}"]
                x, y = line.get_data()
                assert sorted(set(np.round(np.asarray(x) * 1e3).astype(int))) == sorted(set(lat))
                assert y[0] == 0 and y[-1] == 1.0


def _parse_ns(value: str, unit: str) -> float:
    return float(value) * {"ns": 1, "µs": 1e3, "ms": 1e6, "s": 1e9, "min": 60e9}[unit]


# -- figures 9 and 10 -------------------------------------------------------------------

def test_huge_page_availability_sums_free_blocks_of_pageblock_order(
        run: Path, pages: dict[str, Figure]) -> None:
    drawn = gids(pages["09_huge_pages"])
    raw = raw_buddyinfo(run)
    max_order = max(o for z in raw.values() for per in z["mt"].values() for o, _ in per)
    zs = table(run, ts.ZONESTAT_FILE)
    for nid in sorted({n for n, _ in raw}):
        per_time: Counter[int] = Counter()
        for (n, _), z in raw.items():
            if n != nid:
                continue
            for t, grid in zip(sorted(z["times"]), totals(z, max_order), strict=True):
                per_time[t] += sum(grid[o] << (o - 9) for o in range(9, max_order + 1))
        (free,) = drawn[f"huge free node {nid}"]
        expect = [per_time[t] for t in sorted(per_time)]
        assert stair_values(free).tolist() == expect
        movable: Counter[int] = Counter()
        for t, n, m in zip(zs["time_ns"], zs["nid"], zs["pageblocks_movable_only"],
                           strict=True):
            if n == nid:
                movable[t] += m
        (band,) = drawn[f"huge movable node {nid}"]
        top = stair_values(band)
        assert top.tolist() == [e + movable[t] for e, t in zip(expect, sorted(per_time),
                                                                 strict=True)]


def test_vmstat_table_lists_every_nonzero_counter(run: Path, pages: dict[str, Figure]) -> None:
    drawn = gids(pages["10_vmstat"])
    text = "\n".join(t.get_text() for gid, (t,) in sorted(drawn.items())
                     if gid.startswith("vmstat column"))
    shown = {m.group(1): int(m.group(2).replace(",", ""))
             for m in re.finditer(r"^  (\w+)\s+([\d,]+)$", text, re.M)}
    nonzero = {}
    for line in (run / ts.VMSTAT_FILE).read_text().splitlines():
        name, value = line.split()
        if int(value):
            nonzero[name] = int(value)
    assert shown == nonzero


# -- the cover and the files ------------------------------------------------------------

def test_cover_answers_come_from_the_trace(run: Path, data: RunData) -> None:
    lines = cover_lines(data)
    allocs = _allocs(run)
    fails = Counter(a["caller"] for a in allocs if a["outcome"] == ts.OUTCOME_FAIL)
    first = {c: min(a["time_ns"] for a in allocs if a["caller"] == c
                    and a["outcome"] == ts.OUTCOME_FAIL) for c in fails}
    assert fails, "the story run must fail somewhere"
    text = "\n".join(lines["Failures by caller"])
    for caller, n in fails.items():
        requests = sum(1 for a in allocs if a["caller"] == caller)
        when = re.escape(format_ns(first[caller]))
        orders = "; ".join(
            f"order {o}: {sum(1 for a in allocs if a['caller'] == caller and a['order'] == o and a['outcome'] == ts.OUTCOME_FAIL):,} of "  # noqa: E501
            f"{sum(1 for a in allocs if a['caller'] == caller and a['order'] == o):,}"
            for o in sorted({a["order"] for a in allocs if a["caller"] == caller
                             and a["outcome"] == ts.OUTCOME_FAIL}))
        assert re.search(rf"^{re.escape(caller)}\s+{n:,} of {requests:,} requests failed .*"
                         rf"first at {when} \({re.escape(orders)}\)$", text, re.M), text
    for workload in data.manifest["config"]["workloads"]:
        assert workload["name"] in text  # callers that never failed are listed too
    huge = [a for a in allocs if a["order"] >= 9]
    ok = sum(1 for a in huge if a["outcome"] == ts.OUTCOME_OK)
    assert lines["Huge pages"][0] == (f"allocation attempts at order >= pageblock: {ok:,} "
                                      f"succeeded of {len(huge):,}")
    spans = table(run, ts.SPANS_FILE)
    pool = [d for n, d in zip(spans["name"], spans["detail"], strict=True)
            if n == ts.SPAN_HUGETLB_RESIZE]
    assert len(lines["Huge pages"]) == 1 + len(pool)
    for line, detail in zip(lines["Huge pages"][1:], pool, strict=True):
        fields = dict(kv.split("=") for kv in detail.split())
        assert f"= {int(fields['count']):,} ({fields['size']})" in line
        assert line.endswith(f"the {fields['size']} pool holds {int(fields['nr_hugepages']):,}")
    reclaim = [e - s for n, s, e in zip(spans["name"], spans["start_ns"], spans["end_ns"],
                                        strict=True) if n == ts.SPAN_DIRECT_RECLAIM]
    if reclaim:
        worst = next(x for x in lines["Worst stalls"] if x.startswith("direct reclaim"))
        assert worst.split(": ")[1].startswith(format_ns(max(reclaim)))


def test_time_below_watermarks_on_the_cover(run: Path, data: RunData) -> None:
    zs = table(run, ts.ZONESTAT_FILE)
    end = data.duration_s
    below: dict[tuple[int, str], float] = defaultdict(float)
    zones = sorted({(n, z) for n, z in zip(zs["nid"], zs["zone"], strict=True)})
    for key in zones:
        rows = sorted((t, f, h) for t, n, z, f, h in zip(
            zs["time_ns"], zs["nid"], zs["zone"], zs["nr_free_pages"], zs["wmark_high"],
            strict=True) if (n, z) == key)
        for (t, free, high), nxt in zip(rows, [r[0] for r in rows[1:]] + [end * 1e9],
                                        strict=True):
            if free < high:
                below[key] += (nxt - t) / 1e9
    text = "\n".join(cover_lines(data)["Time with NR_FREE_PAGES below a watermark (+ boost)"])
    assert any(below.values()), "the story run must go below a high watermark"
    for (nid, zone), seconds in below.items():
        if seconds:
            assert f"node {nid} {zone}: below high {format_ns(seconds * 1e9)}" in text


def test_pdf_has_the_cover_and_every_figure(run: Path, tmp_path: Path) -> None:
    from pypdf import PdfReader

    from reports.build import build_report

    written = build_report(run, tmp_path)
    assert [p.name for p in written] == ["report.pdf", *(f"{s}.png" for s in FIGURE_STEMS)]
    reader = PdfReader(written[0])
    assert len(reader.pages) == 1 + len(FIGURE_STEMS)
    manifest = json.loads((run / ts.MANIFEST_FILE).read_text())
    cover = reader.pages[0].extract_text()
    assert manifest["question"].split("\n")[0] in cover.replace("\n", " ")
