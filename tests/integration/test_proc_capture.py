"""``allocsim proc capture``: a host's /proc and sysfs state, as a snapshot directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from allocsim.capture import CaptureError, capture
from allocsim.cli import main
from allocsim.procshow import proc_show
from simcore.formats.procfs import parse_sysctl_vm

ORACLE = Path(__file__).resolve().parents[1] / "data" / "oracle" / "boot-idle-numa2" / "start"


def _fake_host(root: Path) -> Path:
    """A host tree holding the oracle's 2-node start snapshot where Linux keeps it."""
    proc = root / "proc"
    (proc / "sys" / "vm").mkdir(parents=True)
    for name in ("zoneinfo", "buddyinfo", "pagetypeinfo", "vmstat"):
        (proc / name).write_bytes((ORACLE / name).read_bytes())
    for name, value in parse_sysctl_vm((ORACLE / "sysctl_vm").read_text()).items():
        text = "\t".join(map(str, value)) if isinstance(value, tuple) else str(value)
        (proc / "sys" / "vm" / name).write_text(text + "\n")
    (proc / "sys" / "vm" / "page-cluster").write_text("3\n")
    (proc / "sys" / "fs").mkdir()
    (proc / "sys" / "fs" / "dentry-state").write_text("38254\t21532\t45\t0\t7186\t0\n")
    compact = proc / "sys" / "vm" / "compact_memory"
    compact.write_text("")
    compact.chmod(0o200)  # write-only, as in /proc
    for nid in (0, 1):
        node = root / "sys" / "devices" / "system" / "node" / f"node{nid}"
        node.mkdir(parents=True)
        (node / "cpulist").write_bytes((ORACLE / f"node{nid}.cpulist").read_bytes())
        (node / "distance").write_text("10 20\n" if nid == 0 else "20 10\n")
    return root


def test_a_capture_reads_back_as_the_snapshot_it_copied(tmp_path: Path) -> None:
    root = _fake_host(tmp_path / "host")
    out = tmp_path / "snap"
    missing = capture(out, root)
    assert (out / "pagetypeinfo").read_bytes() == (ORACLE / "pagetypeinfo").read_bytes()
    sysctl = parse_sysctl_vm((out / "sysctl_vm").read_text())
    assert sysctl["lowmem_reserve_ratio"] == \
        parse_sysctl_vm((ORACLE / "sysctl_vm").read_text())["lowmem_reserve_ratio"]
    assert sysctl["page-cluster"] == 3 and "compact_memory" not in sysctl
    assert proc_show(out, False) == proc_show(ORACLE, False)
    assert (out / "node1.cpulist").exists()
    assert (out / "node1.distance").read_text() == "20 10\n"
    assert (out / "dentry-state").read_text().startswith("38254\t21532")
    said = "\n".join(missing)
    for name in ("meminfo", "slabinfo", "iomem", "extfrag_index", "node0.meminfo",
                 "transparent_hugepage_enabled", "inode-state"):
        assert name in said
    assert (out / "capture.txt").read_text().count("not captured") == len(missing)
    assert not list(tmp_path.glob(".snap.tmp-*"))


def test_no_zoneinfo_or_an_existing_output_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(CaptureError, match="zoneinfo"):
        capture(tmp_path / "snap", tmp_path / "nothing-here")
    assert not (tmp_path / "snap").exists()
    (tmp_path / "taken").mkdir()
    assert main(["proc", "capture", "-o", str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err
    assert "existing path" in err and len(err.splitlines()) == 1


@pytest.mark.skipif(not os.access("/proc/zoneinfo", os.R_OK), reason="not a Linux host")
def test_this_host_can_be_captured_and_shown(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["proc", "capture", "-o", str(tmp_path / "me")]) == 0
    assert "snapshot:" in capsys.readouterr().out
    assert "Node 0, zone" in proc_show(tmp_path / "me", False)
