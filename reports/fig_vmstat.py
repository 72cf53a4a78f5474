"""Figure 10: the run's ``/proc/vmstat`` counters, under their kernel names."""

from __future__ import annotations

from matplotlib.figure import Figure

from reports.style import new_figure
from simcore.formats.vmstat_text import VM_EVENT_ITEMS

COLUMNS = 3
ROWS = 46


def vmstat_rows(vmstat: dict[str, int]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The counters to show, in ``/proc/vmstat`` order: ``(state, events)``.

    State counters (``nr_*`` and the NUMA and writeback items) are shown when non-zero, as
    are event counters; a counter at 0 says nothing happened and is left out.
    """
    events = set(VM_EVENT_ITEMS)
    state = [(k, v) for k, v in vmstat.items() if k not in events and v]
    happened = [(k, v) for k, v in vmstat.items() if k in events and v]
    return state, happened


def vmstat_figure(vmstat: dict[str, int]) -> Figure:
    """The non-zero ``/proc/vmstat`` counters at the end of the run, three columns."""
    fig = new_figure(margins=False)
    fig.text(0.03, 0.965, "/proc/vmstat at the end of the run (non-zero counters, kernel "
             "names; the full file is vmstat.txt)", fontsize=12, weight="bold", va="top")
    state, happened = vmstat_rows(vmstat)
    lines = ["events (vm_event_item)", *(f"  {k:<30}{v:>14,}" for k, v in happened), "",
             "state (zone, NUMA and node items)", *(f"  {k:<30}{v:>14,}" for k, v in state)]
    if not happened and not state:
        lines = ["every counter is 0"]
    capacity = COLUMNS * ROWS
    if len(lines) > capacity:
        lines = lines[: capacity - 1] + [f"  ... {len(lines) - capacity + 1} more lines in "
                                         "vmstat.txt"]
    for col in range(COLUMNS):
        chunk = lines[col * ROWS:(col + 1) * ROWS]
        if chunk:
            fig.text(0.02 + col * 0.33, 0.92, "\n".join(chunk), family="monospace",
                     fontsize=7, va="top", linespacing=1.25, gid=f"vmstat column {col}")
    return fig
