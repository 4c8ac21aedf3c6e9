"""Real machines: zones from /proc snapshots (issue 6).

``take_snapshot()`` reads this machine's zones from /proc: as root, every PFN is
classified from /proc/kpageflags (:mod:`sweep.snapshot.classify`); otherwise each zone
is synthesised from /proc/buddyinfo and /proc/zoneinfo (:mod:`sweep.snapshot.synth`).
``save_snapshot()`` / ``load_snapshot()`` write and read the compressed file
(:mod:`sweep.snapshot.file`); ``python -m sweep.snapshot`` is the command line.
"""

from sweep.snapshot.file import (
    FORMAT_VERSION,
    MAGIC,
    Snapshot,
    SnapshotError,
    ZoneSnapshot,
    load_snapshot,
    save_snapshot,
    take_snapshot,
)

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "Snapshot",
    "SnapshotError",
    "ZoneSnapshot",
    "load_snapshot",
    "save_snapshot",
    "take_snapshot",
]
