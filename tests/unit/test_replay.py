"""Replay of real traces (simcore.sim.replay, allocsim replay) and the block-taking primitives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allocsim.cli import main
from allocsim.replay import replay_config
from simcore.formats.ftrace import import_trace
from simcore.mm.constants import MIGRATE_TYPES
from simcore.mm.gfp import GFP_KERNEL, GFP_USER, parse_gfp
from simcore.mm.invariants import check_invariants
from simcore.mm.pages import PG_PCP, PG_RESERVED
from simcore.mm.take_page import take_block_off_buddy, take_block_off_pcp
from simcore.sim.machine import Machine
from simcore.sim.replay import Replay

DATA = Path(__file__).parent.parent / "data" / "oracle"
FRESH = DATA / "hugetlb-fresh"
MOVABLE = "GFP_HIGHUSER_MOVABLE"


def small_machine(tmp_path: Path, memory: str = "64MiB", extra: str = "") -> Machine:
    """A 1-node, 2-CPU machine from a --machine YAML file."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    yaml = tmp_path / "machine.yaml"
    yaml.write_text(f"machine:\n  nodes:\n    - memory: {memory}\n      cpus: 2\n{extra}")
    return Machine.from_config(replay_config(yaml, 0, "t"))


def trace_file(tmp_path: Path, events: list[tuple[float, int, str, int, int, str]]) -> Path:
    """An imported trace of ``(seconds, cpu, event, pfn, order, gfp)`` rows."""
    lines = ["# tracer: nop"]
    for t, cpu, event, pfn, order, gfp in events:
        head = f"          task-{100 + cpu}     [{cpu:03d}] .....  {t:.6f}: {event}: "
        body = f"page=(____ptrval____) pfn={pfn:#x} order={order}"
        if event == "mm_page_alloc":
            body += f" migratetype=1 gfp_flags={gfp}"
        lines.append(head + body)
    text = tmp_path / "trace.txt"
    text.write_text("\n".join(lines) + "\n")
    out = tmp_path / "trace.parquet"
    import_trace(text, out)
    return out


def run_replay(m: Machine, trace: Path, placement: str, **kw: object) -> Replay:
    r = Replay(m, trace, placement, **kw)  # type: ignore[arg-type]
    m.env.run(until=m.env.process(r.process()))
    return r


def allocated_map(m: Machine) -> dict[int, int]:
    return {h.pfn: h.order for h in m.owner_of.values() if h.alive}


# -- take_block_off_buddy / take_block_off_pcp -------------------------------------------
def buddy_free_pfns(zone) -> set[int]:  # noqa: ANN001
    """Every pfn on the zone's buddy free lists, read from the lists themselves."""
    out: set[int] = set()
    for order in range(zone.max_order + 1):
        for mt in range(MIGRATE_TYPES):
            for pfn in zone.free_area.iter_list(order, mt):
                out.update(range(pfn, pfn + (1 << order)))
    return out


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_take_block_off_buddy_conserves_pages(tmp_path_factory, data) -> None:  # noqa: ANN001
    """Taking an aligned block succeeds exactly when all its pages are on the buddy lists;
    then only those pages leave them, and the allocator stays consistent."""
    m = small_machine(tmp_path_factory.mktemp("m"), "16MiB")
    mm = m.mm
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    for _ in range(data.draw(st.integers(0, 60))):  # some churn first
        h = m.alloc_now("x", int(GFP_KERNEL), int(rng.integers(0, 4)), int(rng.integers(0, 2)))
        if h is not None and rng.random() < 0.5:
            m.free(h)
    zone = mm.zones[-1]
    order = data.draw(st.integers(0, mm.max_order))
    pfn = data.draw(st.integers(zone.zone_start_pfn, zone.end_pfn - 1)) & ~((1 << order) - 1)
    if pfn < zone.zone_start_pfn:
        return
    free = buddy_free_pfns(zone)
    wanted = set(range(pfn, pfn + (1 << order)))
    before = zone.nr_free_pages
    mt = take_block_off_buddy(zone, pfn, order)
    assert (mt >= 0) == wanted.issubset(free)
    if mt < 0:
        assert buddy_free_pfns(zone) == free
        return
    assert buddy_free_pfns(zone) == free - wanted
    assert zone.nr_free_pages == before - (1 << order)
    mm.prep_new_page(pfn, order, 0, mt)
    check_invariants(mm, allocated_map(m) | {pfn: order})


def test_take_block_off_buddy_splits_around_the_block(tmp_path: Path) -> None:
    m = small_machine(tmp_path, "16MiB")
    zone = m.mm.zones[-1]
    top = next(p for mt in range(MIGRATE_TYPES)
               for p in zone.free_area.iter_list(m.mm.max_order, mt))
    target = top + 3 * 16 + 5
    free = buddy_free_pfns(zone)
    assert take_block_off_buddy(zone, target, 0) >= 0
    assert buddy_free_pfns(zone) == free - {target}
    assert take_block_off_buddy(zone, target, 0) == -1  # no longer free
    m.mm.prep_new_page(target, 0, 0, 1)
    check_invariants(m.mm, {target: 0} | allocated_map(m))
    m.mm.free_pages(target, 0, 0)
    m.mm.drain_all_pages()
    assert buddy_free_pfns(zone) == free
    check_invariants(m.mm, allocated_map(m))  # it merged back completely


def test_take_block_off_pcp(tmp_path: Path) -> None:
    m = small_machine(tmp_path)
    h = m.alloc_now("x", int(GFP_USER), 0, 1)
    pfn = h.pfn
    m.free(h)
    zone = m.mm.page_zone(pfn)
    assert m.mm.pages.flags[pfn] & PG_PCP
    count = zone.per_cpu_pageset[1].count
    assert not take_block_off_pcp(zone, pfn, 1)  # wrong order
    assert take_block_off_pcp(zone, pfn, 0)
    assert zone.per_cpu_pageset[1].count == count - 1
    assert not m.mm.pages.flags[pfn] & PG_PCP


# -- replay on synthetic traces ----------------------------------------------------------
def test_real_placement_takes_the_host_pfns(tmp_path: Path) -> None:
    m = small_machine(tmp_path)
    base = m.mm.zones[-1].zone_start_pfn + 4096
    trace = trace_file(tmp_path, [
        (1.0, 0, "mm_page_alloc", base, 0, MOVABLE),
        (1.0, 1, "mm_page_alloc", base + 8, 3, "GFP_KERNEL"),
        (1.1, 0, "mm_page_alloc", base + 512, 9, MOVABLE + "|__GFP_COMP"),
        (1.2, 0, "mm_page_free", base, 0, ""),
    ])
    r = run_replay(m, trace, "real")
    assert allocated_map(m) == {base + 8: 3, base + 512: 9}
    assert r.counts.pfn_busy == r.counts.pfn_no_zone == 0
    check_invariants(m.mm, allocated_map(m))


def test_same_timestamp_free_before_alloc_is_reordered(tmp_path: Path) -> None:
    """ftrace prints CPU 0's events of a timestamp before CPU 1's: an allocation of a pfn
    that CPU 1 frees "later" in the same microsecond waits for that free."""
    m = small_machine(tmp_path)
    pfn = m.mm.zones[-1].zone_start_pfn + 2048
    trace = trace_file(tmp_path, [
        (1.0, 1, "mm_page_alloc", pfn, 0, MOVABLE),
        (2.0, 0, "mm_page_alloc", pfn, 0, MOVABLE),  # printed first ...
        (2.0, 1, "mm_page_free", pfn, 0, ""),  # ... but happened after this
    ])
    for placement in ("real", "model"):
        m = small_machine(tmp_path / placement) if placement == "model" else m
        r = run_replay(m, trace, placement)
        assert r.counts.pfn_busy == 0 and r.counts.reused_unfreed == 0, placement
        assert len(allocated_map(m)) == 1


def test_unmatched_frees_skipped_or_applied(tmp_path: Path) -> None:
    """A free of a block allocated before the trace: counted and skipped under model, applied
    at its pfn under real."""
    m = small_machine(tmp_path)
    pre = m.alloc_now("before-trace", int(GFP_KERNEL), 2, 0)
    trace = trace_file(tmp_path, [(1.0, 0, "mm_page_free", pre.pfn, 2, "")])
    r = run_replay(m, trace, "model")
    assert r.counts.frees_unmatched_skipped == 1 and pre.alive
    r = run_replay(m, trace, "real")
    assert r.counts.frees_unmatched_applied == 1 and not pre.alive
    check_invariants(m.mm, allocated_map(m))


def test_partial_free_after_split_page(tmp_path: Path) -> None:
    m = small_machine(tmp_path)
    base = m.mm.zones[-1].zone_start_pfn + 1024
    trace = trace_file(tmp_path, [
        (1.0, 0, "mm_page_alloc", base, 2, "GFP_KERNEL"),
        (1.1, 0, "mm_page_free", base + 1, 0, ""),
        (1.2, 0, "mm_page_free", base + 3, 0, ""),
    ])
    for placement in ("model", "real"):
        mm = small_machine(tmp_path / placement)
        r = run_replay(mm, trace, placement)
        assert r.counts.partial_frees == 1
        assert sorted(h.order for h in mm.owner_of.values() if h.alive) == [0, 0]
        check_invariants(mm.mm, allocated_map(mm))


def test_guessed_reservation_moves(tmp_path: Path) -> None:
    """The host allocates a pfn the model guessed reserved: the reservation moves to a free
    block, managed pages stay the same and the host's pfn is placed."""
    m = small_machine(tmp_path, extra="      reserved: {DMA32: 1MiB}\n")
    flags = m.mm.pages.flags_np
    zone = m.mm.zones[-1]
    reserved = [p for lo, hi in zone.present_ranges for p in range(lo, hi)
                if flags[p] & PG_RESERVED]
    assert reserved, "the model reserves some pages of its last zone"
    before = int((flags & PG_RESERVED).sum())
    trace = trace_file(tmp_path, [(1.0, 0, "mm_page_alloc", reserved[0], 0, "GFP_KERNEL")])
    r = run_replay(m, trace, "real")
    assert r.counts.reserved_moved == 1 and r.counts.pfn_busy == 0
    assert int((flags & PG_RESERVED).sum()) == before
    assert allocated_map(m) == {reserved[0]: 0}
    check_invariants(m.mm, allocated_map(m))


def test_model_placement_uses_the_allocator(tmp_path: Path) -> None:
    """Under model placement the model picks the pfns; a freed host pfn frees the block
    it was allocated as, and a host failure is tried too."""
    m = small_machine(tmp_path)
    trace = trace_file(tmp_path, [
        (1.0, 0, "mm_page_alloc", 0x999999, 0, "GFP_KERNEL"),
        (1.1, 1, "mm_page_alloc", 0, 3, "GFP_KERNEL"),  # failed on the host
        (1.2, 0, "mm_page_free", 0x999999, 0, ""),
    ])
    r = run_replay(m, trace, "model")
    assert r.counts.model_ok_host_failed == 1 and r.counts.host_failed == 1
    assert allocated_map(m) == {}
    assert m.mm.vm["pgalloc_normal"] + m.mm.vm["pgalloc_dma32"] + m.mm.vm["pgalloc_dma"] >= 9


# -- the oracle's hugetlb-fresh trace -------------------------------------------------------
@pytest.fixture(scope="module")
def fresh_table(tmp_path_factory) -> Path:  # noqa: ANN001
    out = tmp_path_factory.mktemp("fresh") / "trace.parquet"
    import_trace(FRESH / "trace.txt.xz", out)
    return out


def test_real_trace_replays_without_disagreement(fresh_table: Path) -> None:
    m = Machine.from_config(replay_config(FRESH / "start", 0, "t"))
    r = run_replay(m, fresh_table, "real")
    assert (r.counts.allocs, r.counts.frees, r.counts.host_failed) == (380, 69, 1)
    assert r.counts.pfn_busy == r.counts.pfn_no_zone == r.counts.pfn_other_zone == 0
    live = {pfn: h for pfn, h in r.live.items() if h.alive}
    assert all(h.pfn == pfn for pfn, h in live.items())
    # meta.txt: 361 huge pages obtained, then HP_RELEASE=32 given back inside the trace
    assert sum(1 for h in live.values() if h.order == 9) == 361 - 32
    check_invariants(m.mm, allocated_map(m))


def test_cli_replay_writes_a_run_directory(fresh_table: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "fresh-model"
    assert main(["replay", str(FRESH / "trace.txt.xz"), "--machine", str(FRESH / "start"),
                 "-o", str(out), "--no-report", "-q"]) == 0
    assert "replayed 380 allocations" in capsys.readouterr().out
    events = pq.read_table(out / "trace" / "events.parquet").to_pydict()
    assert events["event"].count("mm_page_alloc") >= 380
    again = tmp_path / "again"
    assert main(["replay", str(fresh_table), "--machine", str(FRESH / "start"),
                 "-o", str(again), "--no-report", "-q"]) == 0
    assert (out / "trace" / "events.parquet").read_bytes() == \
        (again / "trace" / "events.parquet").read_bytes()


def test_cli_replay_bad_input(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"\x00garbage")
    assert main(["replay", str(bad), "--machine", str(FRESH / "start"), "-o",
                 str(tmp_path / "o"), "-q"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "Traceback" not in err
    trace = trace_file(tmp_path, [(1.0, 7, "mm_page_alloc", 0x1000, 0, "GFP_KERNEL")])
    assert main(["replay", str(trace), "--machine", str(FRESH / "start"), "-o",
                 str(tmp_path / "o2"), "-q", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert "CPU 7" in err and ":2:" in err


def _replay_error(tmp_path: Path, capsys, trace: Path, machine: Path) -> str:  # noqa: ANN001
    assert main(["replay", str(trace), "--machine", str(machine), "-o", str(tmp_path / "o"),
                 "-q", "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    return err


def test_cli_replay_names_what_is_wrong_with_its_inputs(tmp_path: Path, capsys) -> None:
    start = FRESH / "start"
    err = _replay_error(tmp_path, capsys, tmp_path / "none.txt", start)
    assert err.endswith("none.txt: expected an ftrace text file or an imported "
                        "trace.parquet, got 'no such file'")  # no ':0:' line
    trace = trace_file(tmp_path, [(1.0, 0, "mm_page_alloc", 0x1000, 0, "GFP_KERNEL")])
    err = _replay_error(tmp_path, capsys, trace, tmp_path / "nope")
    assert "nope: --machine: expected a /proc snapshot directory or a YAML file" in err
    cut = tmp_path / "cut.txt"  # a trace cut in the middle of its last line
    cut.write_text((tmp_path / "trace.txt").read_text().rstrip("\n")[:-12])
    err = _replay_error(tmp_path, capsys, cut, start)
    assert "cut.txt:2: expected a last line that ends in a newline" in err
    fake = tmp_path / "fake.txt.xz"
    fake.write_bytes(b"not xz at all")
    err = _replay_error(tmp_path, capsys, fake, start)
    assert "expected xz-compressed ftrace text" in err and "data that is not xz" in err


def test_gfp_strings_of_the_trace_parse() -> None:
    assert parse_gfp(MOVABLE + "|__GFP_COMP")


def test_overlay_of_a_replay_shares_the_trace_clock(tmp_path: Path) -> None:
    """A replay's time 0 is its first event: the overlay shifts it onto the host's uptime."""
    from reports.load import load_run
    from reports.overlay import overlay_pages

    out = tmp_path / "r"
    assert main(["replay", str(FRESH / "trace.txt.xz"), "--machine", str(FRESH / "start"),
                 "-o", str(out), "--no-report", "-q"]) == 0
    data = load_run(out)
    start_s = data.summary["replay"]["trace_start_ns"] / 1e9
    assert 4.70 < start_s < 4.73  # meta.txt: trace_on_uptime=4.70
    pages = overlay_pages(data.buddyinfo, FRESH / "buddyinfo.periodic", 9, start_s)
    sim_line = pages[-1][1].axes[0].lines[0]
    assert min(sim_line.get_xdata()) == pytest.approx(start_s)


def test_frees_inside_a_compaction_run_are_migrations(tmp_path: Path) -> None:
    """The host's compaction frees a migrated page's old place and takes its target with no
    event: under real placement the block moves to the free scanner's target (the highest
    free page of a MOVABLE pageblock); under model placement it stays allocated until a
    free of a block the replay does not know."""
    probe = small_machine(tmp_path / "probe").mm.zones[-1]
    base = probe.zone_start_pfn + 1024
    top = probe.end_pfn - 512  # the zone's last pageblock, partly used below
    trace = trace_file(tmp_path, [
        (0.5, 0, "mm_page_alloc", top + 5, 0, MOVABLE),
        (1.0, 0, "mm_page_alloc", base, 0, MOVABLE),
        (2.05, 1, "mm_page_free", base, 0, ""),  # task-101, inside its compaction run
        (3.0, 0, "mm_page_free", base + 77, 0, ""),  # a block the replay never saw
    ])
    runs = {101: [(2_000_000_000, 2_100_000_000)]}
    m = small_machine(tmp_path / "real")
    r = run_replay(m, trace, "real", compaction_runs=runs)
    assert r.counts.migrations == 1
    # isolate_freepages(): the highest MOVABLE pageblock that is not wholly free, and in
    # it the lowest free page (wholly free blocks are not suitable_migration_target()s)
    assert sorted(allocated_map(m)) == [top, top + 5]
    check_invariants(m.mm, allocated_map(m))
    m = small_machine(tmp_path / "model")
    r = run_replay(m, trace, "model", compaction_runs=runs)
    assert (r.counts.migrations, r.counts.migrated_freed) == (1, 1)
    assert len(allocated_map(m)) == 1  # the block at the top
    without = run_replay(small_machine(tmp_path / "plain"), trace, "model")
    assert (without.counts.migrations, without.counts.frees_unmatched_skipped) == (0, 1)


def test_compaction_runs_of_a_real_slowpath_trace() -> None:
    from simcore.formats.trace_table import compaction_runs

    runs = compaction_runs(DATA / "hugetlb-fragmented-nocompact" / "slowpath-trace.txt.xz")
    assert {pid: len(spans) for pid, spans in runs.items()} == {34: 6, 1: 65}  # 71 begins
    assert runs[34][0] == (15_760_568_000, 15_784_513_000)  # kcompactd0's first run


def test_truncated_compressed_trace_and_a_cpu_named_in_the_users_file(
        tmp_path: Path, capsys) -> None:  # noqa: ANN001
    cut = tmp_path / "cut.txt.xz"
    cut.write_bytes((FRESH / "trace.txt.xz").read_bytes()[:3000])
    assert main(["replay", str(cut), "--machine", str(FRESH / "start"), "-o",
                 str(tmp_path / "o"), "-q", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert str(cut) in err and "ends early" in err and "Traceback" not in err
    text = tmp_path / "cpu.txt"
    text.write_text("# tracer: nop\n          task-1     [005] .....  1.000000: mm_page_free: "
                    "page=(____ptrval____) pfn=0x1234 order=0\n")
    assert main(["replay", str(text), "--machine", str(FRESH / "start"), "-o",
                 str(tmp_path / "o2"), "-q", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert f"{text}:2:" in err and "CPU 5" in err
    assert not (tmp_path / "o2").exists() and not list(tmp_path.glob("o2*"))


@pytest.mark.parametrize("placement", ["model", "real"])
def test_a_pre_trace_block_a_host_owner_holds_is_freed_once_at_its_order(
        tmp_path: Path, placement: str) -> None:
    """free_the_page(): an order-2 block goes to a pcp list as one order-2 entry."""
    from simcore.formats.procmachine import machine_from_proc
    from simcore.sim.initial_state import apply_initial_state

    start = FRESH / "start"
    m = Machine(*machine_from_proc(start), 1)
    apply_initial_state(m, start)
    assert m.held is not None
    owner = m.held.owner_np
    heads = [p for p in np.flatnonzero(owner >= 0).tolist()
             if not p & 3 and (owner[p:p + 4] >= 0).all()]
    pfn = heads[len(heads) // 2]
    zone = next(z for z in m.mm.zones
                if z.zone_start_pfn <= pfn < z.zone_start_pfn + z.spanned_pages)
    pcp = zone.per_cpu_pageset[0]
    before = pcp.count
    trace = trace_file(tmp_path, [(1.0, 0, "mm_page_free", pfn, 2, "")])
    r = run_replay(m, trace, placement)
    assert r.counts.frees_unmatched_applied == 1
    assert (owner[pfn:pfn + 4] < 0).all()
    assert pcp.count == before + 4  # one order-2 entry, not four order-0 frees
    assert m.mm.pages.info[pfn] & 0xF == 2
    held = dict.fromkeys(np.flatnonzero(owner >= 0).tolist(), 0)
    check_invariants(m.mm, held)
