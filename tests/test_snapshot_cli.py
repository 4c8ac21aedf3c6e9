"""``python -m sweep.snapshot {save,show,validate}`` in a subprocess, and the validate report."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kernels.zone import FREE, MOVABLE, KernelProfile
from sweep.snapshot import load_snapshot, save_snapshot
from sweep.snapshot import validate as val
from tests.snapshot_fixtures import write_fake_proc
from tests.test_snapshot_workload import make_snapshot

REPO = Path(__file__).resolve().parent.parent
BUDDYINFO = r"Node +\d+, zone +{name}( +\d+){{11}}"


def run_cli(cwd: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sweep.snapshot", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def can_compact() -> str | None:
    """Why ``validate --compact`` cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    if not os.access("/proc/kpageflags", os.R_OK):
        return "/proc/kpageflags is not readable"
    if not os.access("/proc/sys/vm/compact_memory", os.W_OK):
        return "/proc/sys/vm/compact_memory is not writable"
    return None


def test_validate_without_compact_explains_and_does_nothing(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "validate")
    assert proc.returncode == 2
    assert "write 1 to /proc/sys/vm/compact_memory" in proc.stdout
    assert proc.stderr.startswith("error: nothing was done") and "--compact" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_show_describes_a_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "snap.npz"
    save_snapshot(make_snapshot(), path)
    proc = run_cli(tmp_path, "show", str(path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "fixture-host, Linux 6.18.0-test" in out
    assert "page states: from /proc/kpageflags" in out
    for name in ("DMA32", "Normal"):
        assert len(re.findall(BUDDYINFO.format(name=name), out)) == 2  # read and derived
        assert f"# zone 0:{name}:" in out
    assert "# note: built by tests/test_snapshot_workload.py" in out


def test_show_says_when_the_layout_is_synthesised(tmp_path: Path) -> None:
    path = tmp_path / "snap.npz"
    save_snapshot(make_snapshot(source="synthesised"), path)
    proc = run_cli(tmp_path, "show", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "layout inside the pageblocks is synthesised" in proc.stdout


def test_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    garbled = tmp_path / "garbled.npz"
    garbled.write_bytes(os.urandom(300))
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.arange(4))
    before = sorted(p.name for p in tmp_path.iterdir())
    for args in (
        ["show", str(tmp_path / "missing.npz")],
        ["show", str(garbled)],
        ["show", str(foreign)],
        ["show", str(tmp_path)],
        ["save", "--out", str(tmp_path)],
    ):
        proc = run_cli(tmp_path, *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stderr.startswith("error: "), (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_save_reads_this_machine(tmp_path: Path) -> None:
    out = tmp_path / "here.npz"
    proc = run_cli(tmp_path, "save", "--out", str(out))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    snapshot = load_snapshot(out)
    assert snapshot.zones
    assert "# read: /proc/" in proc.stdout and f"# wrote {out}" in proc.stdout
    if snapshot.source == "kpageflags":
        assert "page states: from /proc/kpageflags" in proc.stdout
    else:
        assert "SYNTHESISED" in proc.stdout
    for zone in snapshot.zones:
        assert re.search(BUDDYINFO.format(name=zone.name), proc.stdout)


# --------------------------------------------------------------------------------------
# The report, without root: two snapshots made up here


def test_compare_reports_other_changes_and_conservation() -> None:
    a = make_snapshot()
    zones_b = []
    for zone in a.zones:
        state = zone.page_state.copy()
        free = np.flatnonzero(state == FREE)
        state[free[:7]] = 2  # seven kernel allocations between A and B
        movable = np.flatnonzero(state == MOVABLE)
        state[movable[:5]] = FREE  # and five pages freed by others
        zones_b.append(dataclasses.replace(zone, page_state=state))
    b = dataclasses.replace(a, zones=tuple(zones_b))
    sims = val.simulate(a, KernelProfile.V6_19)
    vm = {name: 100 for name in val.ACTIVITY_COUNTERS}
    moved = dict(vm, compact_migrate_scanned=900, pgmigrate_success=150)
    report = val.compare(
        a,
        b,
        sims,
        vmstat=(vm, vm, moved, moved),
        compact_seconds=0.5,
        profile=KernelProfile.V6_19,
        profile_note=val.profile_for_release(a.kernel_release)[1],
        pcp_a={"0:Normal": 12},
        pcp_b={"0:Normal": 30},
    )
    assert report.conservation_ok
    assert report.real_delta["compact_migrate_scanned"] == 800
    assert report.real_delta["pgmigrate_success"] == 50 and report.real_delta["compact_stall"] == 0
    assert not any(report.outside_delta.values())
    for z in report.zones:
        assert z.same_layout and z.kernel_allocated == 7 and z.kernel_freed == 0
        assert z.hole_pages == 100
        assert z.free_pages(z.sim) == z.free_pages(z.model_a)
    assert report.simulated["pgmigrate_success"] == sum(
        s.counters["pgmigrate_success"] for s in sims.values()
    )
    text = "\n".join(val.format_report(report))
    assert "approximation for this release" in text
    assert "(b) PFNs whose class among unmovable/reclaimable changed A -> B: 7" in text
    assert "(d) 100 hole PFNs" in text and "12 at A, 30 at B" in text
    assert text.index("What else changed") < text.index("free blocks per order")
    for name in ("DMA32", "Normal"):
        assert f"# zone 0:{name}: conservation holds" in text
        assert re.search(BUDDYINFO.format(name=name) + r" +# simulated, after", text)
    assert re.search(r"^pgmigrate_success +50 ", text, re.M)


def test_run_validation_on_a_fake_proc(tmp_path: Path) -> None:
    machine = write_fake_proc(tmp_path / "proc", kernel="6.19")
    (machine.root / "sys" / "vm").mkdir(parents=True)
    (machine.root / "sys" / "vm" / "compact_memory").write_text("")
    said: list[str] = []
    report = val.run_validation(machine.root, require_root=False, say=said.append)
    assert (machine.root / "sys" / "vm" / "compact_memory").read_text() == "1\n"
    assert any("writing 1 to" in line for line in said)
    assert [z.label for z in report.zones] == ["0:DMA", "0:Normal"]
    assert report.profile == KernelProfile.V6_19 and "approximation" not in report.profile_note
    assert report.conservation_ok
    assert not any(report.real_delta.values()) and not any(report.outside_delta.values())
    for z in report.zones:  # the fake /proc does not change: A and B are the same
        np.testing.assert_array_equal(z.proc_a, z.proc_b)
        np.testing.assert_array_equal(z.model_a, z.model_b)
        assert z.same_layout and z.kernel_allocated == z.kernel_freed == 0
    assert report.zones[1].pcp_a == 12 and report.zones[1].hole_pages > 0
    text = "\n".join(val.format_report(report))
    assert "# conservation checks: hold in every zone" in text
    # free pages per migratetype: /proc/pagetypeinfo beside the inferred block types
    for z in report.zones:
        assert z.free_by_type_real is not None
        assert sum(z.free_by_type_model.values()) == z.free_pages(z.model_a)
        assert sum(z.free_by_type_real.values()) == z.free_pages(z.proc_a)
    assert "free pages per migratetype at A" in text


def test_preconditions_name_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(val.ValidateError, match="kpageflags is not readable"):
        val.check_preconditions(tmp_path, require_root=False)
    (tmp_path / "kpageflags").write_bytes(b"\0" * 8)
    with pytest.raises(val.ValidateError, match="compact_memory does not exist"):
        val.check_preconditions(tmp_path, require_root=False)
    if os.geteuid() != 0:
        with pytest.raises(val.ValidateError, match="must run as root"):
            val.check_preconditions(tmp_path)


def test_profile_for_release() -> None:
    assert val.profile_for_release("6.19.0")[0] == KernelProfile.V6_19
    assert "approximation" not in val.profile_for_release("6.19.2")[1]
    assert val.profile_for_release("5.15.0-91-generic")[0] == KernelProfile.V6_19
    assert "approximation" in val.profile_for_release("6.18.44-fc")[1]
    assert val.profile_for_release("4.19.0")[0] == KernelProfile.V4_12


# --------------------------------------------------------------------------------------
# The real thing


@pytest.mark.skipif(can_compact() is not None, reason=f"validate --compact {can_compact()}")
def test_validate_compact_on_this_machine(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "validate", "--compact")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out = proc.stdout
    assert out.index("will, on this machine") < out.index("# writing 1 to")
    assert out.index("What else changed") < out.index("free blocks per order")
    zones = re.findall(r"^# zone (\d+:\w+) \([\d,]+ pages\): /proc/buddyinfo$", out, re.M)
    assert zones
    for label in zones:
        name = label.split(":")[1]
        for what in ("real, before", "real, after", "simulated, after"):
            assert re.search(BUDDYINFO.format(name=name) + rf" +# {what}", out), (label, what)
        assert f"# zone {label}: conservation holds" in out
    for counter in val.COUNTERS:
        assert re.search(rf"^{counter} +-?[\d,]+ +[\d,]+ ", out, re.M), counter
    assert "# conservation checks: hold in every zone" in out
    assert list(tmp_path.iterdir()) == []  # nothing written
