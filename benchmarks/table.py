"""The human-readable table of one benchmark run (``python -m benchmarks`` without --json)."""

from __future__ import annotations

from typing import Any

HEADER = ("figure", "value", "R (ev/s)", "ratio", "target", "result")
WIDTHS = (44, 14, 12, 7, 10, 6)


def _row(*cells: str) -> str:
    first, *rest = cells
    return f"{first:<{WIDTHS[0]}}" + "".join(
        f" {c:>{w}}" for c, w in zip(rest, WIDTHS[1:], strict=True))


def _verdict(ok: bool) -> str:
    return "pass" if ok else "short"


def _gib(gib: int) -> str:
    return f"{gib // 1024} TiB" if gib >= 1024 and gib % 1024 == 0 else f"{gib} GiB"


def figure_rows(r: dict[str, Any]) -> list[str]:
    """The four figures, each followed by its informational lines."""
    driver_share = r["driver_ns_per_op"] / r["bare_core_ns_per_op"]
    mem, frm, to = _gib(r["memory_gib"]), _gib(r["growth_from_gib"]), _gib(r["growth_to_gib"])
    return [
        _row(*HEADER),
        _row("1. bare core alloc+free (ops/s)", f"{r['bare_core_ops_per_s']:,.0f}",
             f"{r['bare_core_R_events_per_s']:,.0f}", f"{r['bare_core_ratio']:.2f}",
             f">= {r['bare_core_target_ratio']:g} R", _verdict(r["bare_core_pass"])),
        _row("   driver loop alone, stub alloc/free", f"{r['driver_ops_per_s']:,.0f}",
             "", "", "", "info"),
        _row(f"   driver share of the loop's time: {driver_share:.1%}", "", "", "", "", "info"),
        _row("2. end to end, traced (requests/s)", f"{r['e2e_requests_per_s']:,.0f}",
             f"{r['e2e_R_events_per_s']:,.0f}", f"{r['e2e_ratio']:.2f}",
             f">= {r['e2e_target_ratio']:g} R", _verdict(r["e2e_pass"])),
        _row(f"3. memory, {mem}: (peak - import) B/page", f"{r['bytes_per_page_1tib']:.2f}",
             "-", "-", f"<= {r['bytes_per_page_target']:g}", _verdict(r["memory_pass"])),
        _row("   absolute peak RSS / pages (B/page)",
             f"{r['bytes_per_page_1tib_absolute']:.2f}", "", "", "", "info"),
        _row(f"   peak RSS {r['memory_peak_rss_kib'] / 1024:,.0f} MiB, imports only "
             f"{r['memory_import_rss_kib'] / 1024:,.0f} MiB", "", "", "", "", "info"),
        _row(f"4. ns/op growth, {frm} -> {to} (x)", f"{r['growth_16g_to_1t']:.2f}",
             "-", "-", f"<= {r['growth_target']:g}x", _verdict(r["growth_pass"])),
        _row("   growth of ns/op x R (R-normalized)", f"{r['growth_r_normalized']:.2f}",
             "", "", "", "info"),
        _row(f"5. sweep of {r['sweep_runs']} runs, jobs 1 / jobs 2 (x)",
             f"{r['sweep_speedup']:.2f}", f"{r['sweep_R_events_per_s']:,.0f}", "-",
             f">= {r['sweep_speedup_target']:g}x",
             "n/a" if r["sweep_pass"] is None else _verdict(r["sweep_pass"])),
        _row(f"   {r['sweep_jobs1_seconds']:.1f} s on 1 process, {r['sweep_jobs2_seconds']:.1f}"
             f" s on 2; runs of {r['sweep_run_duration_ms'] / 1000:g} simulated s, "
             f"{r['sweep_run_wall_seconds_min']:.1f}-{r['sweep_run_wall_seconds_median']:.1f}"
             " s (min-median) each", "", "", "", "", "info"),
        _row("6. report time / budget (x)", f"{r['report_over_budget']:.2f}",
             f"{r['report_R_events_per_s']:,.0f}", "-",
             f"<= {r['report_over_budget_target']:g}", _verdict(r["report_pass"])),
        *(_row(f"   {s['requests']:,} requests: report {s['report_seconds']:.2f} s, run "
               f"{s['run_wall_seconds']:.1f} s, {s['us_per_request']:.1f} us/request",
               "", "", "", "", "info") for s in r["report_sizes"]),
    ]


def scaling_rows(r: dict[str, Any]) -> list[str]:
    """Figure 4's table: one fresh child process per machine size."""
    lines = [f"{'size':>8} {'pages':>13} {'build s':>8} {'ns/op':>8} {'R (ev/s)':>11} "
             f"{'R-events/op':>11} {'peak RSS MiB':>12}"]
    for s in r["scaling"]:
        lines.append(f"{_gib(s['gib']):>8} {s['pages']:>13,} {s['build_seconds']:>8.2f} "
                     f"{s['ns_per_op']:>8,.0f} {s['r_events_per_s']:>11,.0f} "
                     f"{s['ns_per_op'] * s['r_events_per_s'] / 1e9:>11.2f} "
                     f"{s['peak_rss_kib'] / 1024:>12,.0f}")
    return lines


def format_table(r: dict[str, Any]) -> str:
    """The whole human report of one run."""
    head = (f"allocsim benchmarks  {r['date']}  commit {r['git_commit']}  "
            f"compiled={r['compiled']}  python {r['machine']['python']}  "
            f"{r['machine']['cpus']} CPUs{'  (--quick)' if r['quick'] else ''}")
    notes = [
        "R: raw SimPy events/s (16 processes looping on timeout(1)), median of the samples",
        f"   taken around each figure. All {len(r['R_samples'])} samples: median "
        f"{r['R_events_per_s']:,.0f}, min {min(r['R_samples']):,.0f}, "
        f"max {max(r['R_samples']):,.0f}",
        f"end to end: {r['e2e_simulated_seconds']:g} s simulated per run, "
        f"{r['e2e_events_traced']:,} events traced, {r['e2e_snapshots']} snapshots, "
        f"{r['e2e_failures']} failed requests",
        f"bare core: {r['bare_core_failed_slots']} failed allocations held at the end",
        f"memory: peak RSS is the children's {r['memory_peak_rss_source']}; their "
        f"ru_maxrss ({r['memory_ru_maxrss_kib'] / 1024:,.0f} and "
        f"{r['memory_import_ru_maxrss_kib'] / 1024:,.0f} MiB)",
        "   starts from this parent's peak",
    ]
    children = r["scaling"][0]["children"]
    order = ("one pass up the sizes" if children == 1
             else "passes alternately up and down the sizes")
    return "\n".join([head, "", *figure_rows(r), "", *notes, "",
                      f"4. scaling: bare-core loop, {children} fresh child "
                      f"process{'es' if children != 1 else ''} per size ({order}), pooled",
                      *scaling_rows(r)])
