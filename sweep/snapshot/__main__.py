"""``python -m sweep.snapshot {save,show,validate}``: this machine's memory as simulator zones.

``save`` reads /proc into a snapshot file that ``python -m sweep workload=snapshot
workload.path=FILE`` simulates; ``show`` describes a snapshot file; ``validate
--compact`` compacts this machine for real and compares the kernel with the simulator
(:mod:`sweep.snapshot.validate`). Bad input ends with one ``error:`` line and exit
status 2, with nothing written.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kernels import buddy
from kernels.zone import (
    FREE,
    MOVABLE,
    NR_PAGE_ORDERS,
    PINNED,
    RECLAIMABLE,
    UNMOVABLE,
    MigrateType,
    page_kind,
)
from sweep.expand import zone_arrays, zone_label
from sweep.memory import keep_freed_memory
from sweep.snapshot import (
    Snapshot,
    SnapshotError,
    ZoneSnapshot,
    load_snapshot,
    save_snapshot,
    take_snapshot,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PROC = Path("/proc")
DEFAULT_DIR = Path("outputs") / "snapshots"


class CliError(ValueError):
    """Bad input to the CLI: printed as one ``error:`` line, exit status 2."""


def default_path(hostname: str, now: datetime.datetime | None = None) -> Path:
    """``outputs/snapshots/<hostname>-<date>-<time>.npz`` under the current directory."""
    now = now or datetime.datetime.now()
    host = re.sub(r"[^A-Za-z0-9._-]+", "_", hostname) or "host"
    return DEFAULT_DIR / f"{host}-{now:%Y-%m-%d}-{now:%H-%M-%S}.npz"


# --------------------------------------------------------------------------------------
# Summaries


def _free_pages(counts: np.ndarray) -> int:
    return int((np.asarray(counts, dtype=np.int64) << np.arange(NR_PAGE_ORDERS)).sum())


def classified_buddyinfo(zone: ZoneSnapshot) -> np.ndarray:
    """``(11,)`` buddyinfo of the zone's page states (free runs as the buddy merges them)."""
    page_state, _mt, _hole, _pad = zone_arrays(zone)
    return np.asarray(buddy.buddyinfo(page_state[None, :])[0], dtype=np.int64)


def zone_table(snapshot: Snapshot) -> list[str]:
    """One row per zone: span, pages by kind (holes apart), pageblock types."""
    head = (
        f"{'zone':<10} {'start_pfn':>10} {'spanned':>10} {'managed':>10} {'holes':>10} "
        f"{'free':>10} {'movable':>10} {'unmovable':>10} {'reclaim.':>10} {'pinned':>7} "
        f"{'blocks U/M/R/other':>20}"
    )
    rows = [head]
    for zone in snapshot.zones:
        state = np.asarray(zone.page_state)
        hole = np.asarray(zone.hole, dtype=bool)
        kinds = np.bincount(page_kind(state[~hole]), minlength=8)
        mt = np.asarray(zone.pageblock_migratetype)
        blocks = [int((mt == int(t)).sum()) for t in (MigrateType.UNMOVABLE, MigrateType.MOVABLE)]
        blocks.append(int((mt == int(MigrateType.RECLAIMABLE)).sum()))
        blocks.append(int(mt.size) - sum(blocks))
        rows.append(
            f"{zone_label(zone):<10} {zone.start_pfn:>10,} {zone.spanned:>10,} "
            f"{zone.managed:>10,} {int(hole.sum()):>10,} {int(kinds[FREE]):>10,} "
            f"{int(kinds[MOVABLE]):>10,} {int(kinds[UNMOVABLE]):>10,} "
            f"{int(kinds[RECLAIMABLE]):>10,} {int(kinds[PINNED]):>7,} "
            f"{'/'.join(f'{b:,}' for b in blocks):>20}"
        )
    return rows


def buddyinfo_lines(snapshot: Snapshot) -> list[str]:
    """Per zone: /proc/buddyinfo as read, and as derived from the classified page states."""
    out = []
    for zone in snapshot.zones:
        read = np.asarray(zone.buddyinfo, dtype=np.int64)
        derived = classified_buddyinfo(zone)
        fmt = buddy.format_buddyinfo
        out.append(f"{fmt(read, zone.node, zone.name).rstrip()}   # read from /proc/buddyinfo")
        out.append(f"{fmt(derived, zone.node, zone.name).rstrip()}   # from the page states")
        diff = _free_pages(derived) - _free_pages(read)
        out.append(
            f"# zone {zone_label(zone)}: {_free_pages(read):,} free pages read, "
            f"{_free_pages(derived):,} in the page states ({diff:+,})"
        )
    return out


def source_line(snapshot: Snapshot) -> str:
    if snapshot.source == "kpageflags":
        return "page states: from /proc/kpageflags, PFN by PFN"
    return (
        "page states: SYNTHESISED: the zones, their free blocks per "
        "order and the pageblock type counts are this machine's, but the layout inside "
        "the pageblocks is synthesised (/proc/kpageflags needs root; see the notes)"
    )


def header_lines(snapshot: Snapshot) -> list[str]:
    return [
        f"# {snapshot.hostname}, Linux {snapshot.kernel_release}, taken {snapshot.created} "
        f"(format {snapshot.format_version})",
        f"# {source_line(snapshot)}",
    ]


def notes_lines(snapshot: Snapshot) -> list[str]:
    return [f"# note: {note}" for note in snapshot.notes] or ["# notes: none"]


def give_to_sudo_user(paths: Sequence[Path]) -> str:
    """Under sudo, hand ``paths`` (what ``save`` created) to the user who ran sudo.

    The file stays private (mode 0600: it holds the machine's physical page layout,
    which /proc/kpageflags shows to root only), but that user can simulate it and
    later runs can still write under ``outputs/``. Returns a note for the output.
    """
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if os.geteuid() != 0 or not uid or not gid or not uid.isdigit() or not gid.isdigit():
        return ""
    for p in paths:
        try:
            os.chown(p, int(uid), int(gid))
        except OSError:
            return ""
    return f", owned by uid {uid} who ran sudo"


# --------------------------------------------------------------------------------------
# Commands


def cmd_save(args: argparse.Namespace) -> int:
    out = args.out
    if out is not None and out.is_dir():
        raise CliError(f"--out {out} is a directory; give a file name such as {out}/snap.npz")
    snapshot = take_snapshot(PROC, seed=args.seed, allow_synthesis=True)
    path = out if out is not None else default_path(snapshot.hostname)
    created = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create {path.parent}: {exc.strerror or exc}") from exc
    read = [f"{PROC}/{name}" for name in sorted(snapshot.raw)]
    if snapshot.source == "kpageflags":
        pfns = sum(z.nr_pages for z in snapshot.zones)
        read.append(f"{PROC}/kpageflags and {PROC}/kpagecount ({pfns:,} PFNs)")
    print(f"# read: {', '.join(read) or '(nothing recorded)'}")
    print(*header_lines(snapshot), sep="\n")
    if snapshot.source != "kpageflags":
        print(f"# synthesised with --seed {args.seed}; run as root for the real layout")
    print(*zone_table(snapshot), sep="\n")
    print(*buddyinfo_lines(snapshot), sep="\n")
    print(*notes_lines(snapshot), sep="\n")
    try:
        save_snapshot(snapshot, path)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from exc
    owner = give_to_sudo_user([*reversed(created), path])
    size = path.stat().st_size if path.exists() else 0
    shown = f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.0f} KiB"
    print(f"# wrote {path} ({shown}{owner})")
    print(f"# simulate it: .venv/bin/python -m sweep workload=snapshot workload.path={path}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    path: Path = args.file
    if not path.exists():
        raise CliError(f"{path}: no such file")
    if not path.is_file():
        raise CliError(f"{path} is not a file")
    try:
        snapshot = load_snapshot(path)
    except OSError as exc:
        raise CliError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    print(f"# {path}")
    print(*header_lines(snapshot), sep="\n")
    print(*zone_table(snapshot), sep="\n")
    print(*buddyinfo_lines(snapshot), sep="\n")
    print(*notes_lines(snapshot), sep="\n")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from sweep.snapshot import validate

    if not args.compact:
        print(*validate.plan(PROC), sep="\n")
        print(
            "error: nothing was done: validate compacts this machine's memory for real, so it "
            "runs only with --compact (as root)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        validate.check_preconditions(PROC)
    except validate.ValidateError as exc:
        raise CliError(str(exc)) from exc
    print(*validate.plan(PROC), sep="\n")
    # Reuse freed memory: fewer page allocations of this process between A and B.
    keep_freed_memory()
    report = validate.run_validation(PROC, say=print)
    print(*validate.format_report(report), sep="\n")
    return EXIT_OK if report.conservation_ok else EXIT_FAILED


COMMANDS = {"save": cmd_save, "show": cmd_show, "validate": cmd_validate}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sweep.snapshot",
        description="Snapshots of this machine's memory zones for the compaction simulator.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{save,show,validate}")
    save = sub.add_parser(
        "save",
        help="read /proc into a snapshot file",
        description="Read /proc (zoneinfo, buddyinfo, pagetypeinfo, vmstat and, as root, "
        "kpageflags) into a snapshot file for `python -m sweep workload=snapshot`. Without "
        "root the free blocks and pageblock counts are this machine's but the layout inside "
        "the pageblocks is synthesised.",
    )
    save.add_argument(
        "--out",
        type=Path,
        default=None,
        help="file to write (default: outputs/snapshots/<hostname>-<date>-<time>.npz)",
    )
    save.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the synthesised layout inside pageblocks (used only without kpageflags)",
    )
    show = sub.add_parser("show", help="describe a snapshot file")
    show.add_argument("file", type=Path)
    validate = sub.add_parser(
        "validate",
        help="compact this machine for real and compare with the simulator (root, --compact)",
        description="Snapshot, write 1 to /proc/sys/vm/compact_memory, snapshot again, "
        "simulate the same compaction on the first snapshot and compare. Without --compact "
        "it only says what it would do.",
    )
    validate.add_argument(
        "--compact",
        action="store_true",
        help="really trigger the kernel's compaction of all zones (needs root)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (CliError, SnapshotError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
