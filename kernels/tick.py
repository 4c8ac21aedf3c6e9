"""The time-stepped model (docs/tick-model.md), batched over zones on NumPy or CuPy.

Every zone of a batch runs the same :class:`kernels.program.Program`; per-zone policy
comes from :class:`kernels.program.TickZones`. Inside a zone the events of a tick are
sequential, as in the kernel; each event is one vectorised operation over the zones that
take part in it (``rows``: an index array of zones, one row per zone unless stated).
A zone's result never depends on the other zones of its batch: all randomness is
``kernels.rng.hash_u64(seed, 0, stream, counter)`` of its own seed.

State (struct of arrays, zone axis first, tick-model.md 2):

* per page ``kind`` (Z, N) uint8, ``buddy_order`` (Z, N) int8, ``list_mt`` (Z, N) int8,
  ``key`` (Z, N) int64 (free-list position, KM 11.2: the first entry of
  ``free_list[o][mt]`` is the head with the largest key);
* per pageblock ``block_mt``, ``skip`` and the summaries kept up to date by deltas and
  local (one pageblock) recomputation, never by whole-zone passes per event:
  ``bmax`` (Z, 33, B') the largest key of the heads of each (order, list) group inside
  each pageblock, ``sbmax`` (Z, 33, B'/64) the same per 64 pageblocks, so ``first(o, mt)``
  is an argmax over B/64, one over 64 and one inside a pageblock; FREE, FILE and ISOFREE
  page counts per pageblock (claim rule, reclaim's CLOCK hand, the compaction pool);
* per zone ``nr_free[o][mt]`` (Z, 11, 3), NR_FREE, the compaction and kswapd/kcompactd
  scalars and the counters (Z, C).

A group code ``gc`` (Z, N) int8 (``order * 3 + list`` at heads, -1 elsewhere) lets one
comparison select a group inside a pageblock window.

Bulk frees (a tick's probe frees, reclaim, migrated sources, the released free-scanner
pool, kill_anon / drop_caches) equal the spec's ascending sequence of
``__free_one_page(pfn, 0)`` calls (KM 2.2) but are computed per 1024-page chunk at once:
the final free blocks are the maximal aligned FREE runs; a final block that contains
freed pages takes its key from the call of the last freed page inside it (the clock
value of that call), its list from that page's pageblock, and ``to_tail`` is evaluated
on the state of that moment: the order+1 buddy region lies below (already final) or
above (still as before the sequence). Old heads inside such blocks were merged away.
In 6.19 a final order-10 block formed by a merge at order 9 retypes both pageblocks
(``change_pageblock_range``). Sparse frees (few pages per chunk: probes, most reclaim)
instead run __free_one_page itself in rounds, the r-th freed page of every chunk at once:
chunks never interact, so this is exact too (tests force both paths and compare).
Compaction runs step all their zones one source pageblock at a time; the free scanner
steps one target pageblock at a time and skips unsuitable pageblocks 32 at a time.

Layer rule: array code only (NumPy/CuPy through ``xp``); imports kernels modules only.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from kernels import (
    contig,
    regions,  # regions (seed 002): sorted lists, handshake, worker
)
from kernels.backend import Array, array_namespace, get_xp, is_cupy, to_numpy
from kernels.metrics import extfrag_for_order, fill_contig_page_info, fragmentation_index
from kernels.program import (
    ANON,
    BACKGROUND_KINDS,
    COUNTER_INDEX,
    COUNTERS,
    FILE,
    FREE,
    GFP_MOVABLE,
    GFP_NOWAIT,
    GFP_THP,
    HELD,
    ISOFREE,
    KCOMPACTD_NONE,
    KCOMPACTD_PROACTIVE_DEMAND,
    KCOMPACTD_PROACTIVE_SCORE,
    KIND_MIGRATETYPE,
    PIN,
    RECL,
    SCALARS,
    STREAM_ALLOC,
    STREAM_FREE,
    TRIAL_FIELDS,
    UNMOV,
    Program,
    TickResult,
    TickZones,
    weight_thresholds,
)
from kernels.rng import hash_u64
from kernels.zone import (
    FREE as PS_FREE,
)
from kernels.zone import (
    MOVABLE as PS_MOVABLE,
)
from kernels.zone import (
    PINNED as PS_PINNED,
)
from kernels.zone import (
    RECLAIMABLE as PS_RECLAIMABLE,
)
from kernels.zone import (
    UNMOVABLE as PS_UNMOVABLE,
)
from kernels.zone import (
    KernelProfile,
    setup_per_zone_wmarks,
)

__all__ = ["initial_kinds", "run_program"]

P = 512  # pages per pageblock (pageblock_order 9)
CH = 1024  # pages per MAX_ORDER block: every buddy and order+1 buddy lies inside one chunk
NORD = 11  # orders 0..10
NMT = 5  # UNMOVABLE, MOVABLE, RECLAIMABLE, (HIGHATOMIC: unused), CMA (tick-model.md 7.1)
NG = NORD * NMT  # (order, list) groups
SB = 64  # pageblocks per superblock of the first() search
NONE_KEY = np.iinfo(np.int64).min
MAX_RECLAIM_RETRIES = 16  # kswapd_failures that make a node hopeless (mm/vmscan.c)
MT_U, MT_M, MT_R = 0, 1, 2
MT_CMA = 4  # MIGRATE_CMA (tick-model.md 7.1); kernels.program.MT_CMA
FALLBACKS = ((MT_R, MT_M), (MT_R, MT_U), (MT_U, MT_M))  # fallbacks[mt], KM 2.8

# compact_result (tick-model.md 3.3); CONTINUE must be 0.
CONTINUE, SKIPPED, DEFERRED, SUCCESS, PARTIAL_SKIPPED, COMPLETE, CONTENDED = range(7)
ASYNC, SYNC_LIGHT, SYNC = 0, 1, 2  # enum migrate_mode

_C = COUNTER_INDEX
_KIND_MT = np.zeros(8, dtype=np.int64)
for _k, _mt in KIND_MIGRATETYPE.items():
    _KIND_MT[_k] = _mt


def _is_v6(profile: Any) -> bool:
    """True for the 6.19 profile (KernelProfile or its name)."""
    if isinstance(profile, str):
        profile = KernelProfile[profile.upper()]
    return KernelProfile(profile) == KernelProfile.V6_19


def initial_kinds(page_state: Array, seeds: Any, file_fraction: Any) -> Array:
    """Tick-model kinds (Z, N) uint8 from a ``kernels.fragment`` zone without folios.

    MOVABLE pages become FILE when ``hash_u64(seed, 0, 3, pfn) >> 11 < file_fraction *
    2**53`` and ANON otherwise; UNMOVABLE -> UNMOV, RECLAIMABLE -> RECL, PINNED -> PIN
    (tick-model.md 5). ``seeds`` (Z,) uint64, ``file_fraction`` scalar or (Z,).
    """
    xp = array_namespace(page_state)
    s = xp.asarray(page_state)
    z_n, n = s.shape
    if bool((s > PS_PINNED).any()):
        raise ValueError("initial_kinds: page states with folios are not supported")
    seeds = xp.asarray(to_numpy(seeds).astype(np.uint64).reshape(z_n))
    frac = np.broadcast_to(to_numpy(file_fraction).astype(np.float64), (z_n,))
    h = hash_u64(xp, seeds[:, None], 0, 3, xp.arange(n, dtype=xp.uint64)[None, :])
    is_file = (h >> xp.uint64(11)).astype(xp.float64) < xp.asarray(frac * 2.0**53)[:, None]
    table = xp.asarray([FREE, ANON, UNMOV, RECL, PIN, 0, 0, 0], dtype=xp.uint8)
    out = table[s.astype(xp.int64)]
    out[(s == PS_MOVABLE) & is_file] = FILE
    assert PS_FREE == 0 and PS_UNMOVABLE == 2 and PS_RECLAIMABLE == 3
    return out


def run_program(
    kind: Array,
    block_mt: Array,
    zones: TickZones,
    program: Program,
    profile: Any,
    *,
    backend: str = "auto",
    check_invariants: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> TickResult:
    """Run ``program`` on every zone of the batch (tick-model.md 4); NumPy results.

    ``kind`` (Z, N) uint8 with kinds FREE..HELD, ``block_mt`` (Z, N / 512) int8 in
    {0, 1, 2}; ``profile`` a :class:`KernelProfile` (or "v4_12" / "v6_19").
    ``check_invariants`` checks tick-model.md 4's invariants (and the engine's own
    summaries) after every tick and raises AssertionError naming zone and invariant.
    ``progress(ticks_done, ticks_total)``, when given, is called after every tick (the
    caller rate-limits what it prints).
    """
    return run_program_on(
        get_xp(backend), kind, block_mt, zones, program, profile,
        check_invariants=check_invariants, progress=progress,
    )  # fmt: skip


def run_program_on(
    xp: ModuleType,
    kind: Array,
    block_mt: Array,
    zones: TickZones,
    program: Program,
    profile: Any,
    *,
    check_invariants: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> TickResult:
    """:func:`run_program` on a given array namespace ``xp`` (numpy, cupy, or a NumPy
    stand-in such as ``sweep.synccount.xp``, which counts CuPy's host reads)."""
    zones.validate()
    for ph in program.phases:
        bad = sorted(set(ph.free_kinds) - {ANON, FILE, UNMOV, RECL, PIN})
        if bad:  # a probe frees an allocated order-0 page (not FREE, not part of HELD)
            raise ValueError(f"phase {ph.name}: free_kinds may not contain {bad}")
    eng = _Engine(xp, kind, block_mt, zones, program, _is_v6(profile))
    return eng.run(check_invariants, progress)


def _scatter_add(xp: ModuleType, a: Array, idx: Array, v: Any) -> None:
    if not is_cupy(xp):
        np.add.at(a, idx, v)
    else:
        import cupyx

        cupyx.scatter_add(a, idx, xp.broadcast_to(xp.asarray(v, dtype=a.dtype), idx.shape))


def _scatter_max(xp: ModuleType, a: Array, idx: Array, v: Array) -> None:
    if not is_cupy(xp):
        np.maximum.at(a, idx, v)
    else:
        import cupyx

        cupyx.scatter_max(a, idx, v)


_KEY_BITS = 42  # |key| <= clock < 2**41 in any run this engine can do in practice


def _sort_by_group_then_key_desc(
    xp: ModuleType, seg: Array, sub: Array, nsub: int, key: Array, clock: Array
) -> Array:
    """Permutation sorting heads by (seg, sub) ascending, then key descending.

    Equal to ``lexsort((-key, sub, seg))`` for ``0 <= sub < nsub`` (keys are unique within
    a zone and seg starts with the zone), as one argsort of a packed int64 ``(seg * nsub +
    sub) << 42 | (2**41 - 1 - key)``: one sort pass instead of lexsort's. Falls back to
    lexsort when the packed value would not fit (clock >= 2**41, or seg * nsub >= 2**21).
    """
    nseg = int(seg.max()) + 1 if seg.shape[0] else 0
    if nseg * nsub >= 1 << (63 - _KEY_BITS) or int(clock.max()) >= 1 << (_KEY_BITS - 1):
        return xp.lexsort(xp.stack([-key, sub, seg]))
    top = (seg * nsub + sub) << xp.int64(_KEY_BITS)
    return xp.argsort(top | ((xp.int64(1) << xp.int64(_KEY_BITS - 1)) - 1 - key), kind="stable")


def _levels_and(xp: ModuleType, a: Array) -> list[Array]:
    """[a, pairwise and, ...]: level k is (M, 1024 >> k), 'the aligned 2^k block is all set'.

    Pairs are read as one uint16 (two bool bytes, each 0 or 1): both set <=> 0x0101.
    """
    out = [a]
    for _ in range(10):
        a = xp.ascontiguousarray(a).view(xp.uint16) == 0x0101
        out.append(a)
    return out


def _heads_from_levels(xp: ModuleType, full: list[Array]) -> list[Array]:
    """Heads of the greedy decomposition: fully free at level k and not at level k + 1."""
    heads = [_not_under(xp, full[k], full[k + 1]) for k in range(10)]
    heads.append(full[10])
    return heads


def _not_under(xp: ModuleType, lo: Array, up: Array) -> Array:
    """lo & ~repeat(up, 2, axis=1) for bool arrays, a pair of lo as one uint16."""
    pairs = xp.ascontiguousarray(lo).view(xp.uint16)
    return (pairs & ~(up.astype(xp.uint16) * xp.uint16(0x0101))).view(bool)


class _Run:
    """State of the compaction runs of one compact_zone() call (tick-model.md 3.3), per row."""

    def __init__(self, **arrays: Any) -> None:
        self.__dict__.update(arrays)


class _Engine:
    """All zones of one batch; methods take ``z`` (rows) index arrays of zones."""

    def __init__(
        self,
        xp: ModuleType,
        kind: Array,
        block_mt: Array,
        zones: TickZones,
        program: Program,
        v6: bool,
    ) -> None:
        self.xp = xp
        self.v6 = v6
        self.prog = program
        kind = xp.asarray(kind)
        z_n, n = kind.shape
        if n % CH:
            raise ValueError(f"zone of {n} pages is not a whole number of 1024-page blocks")
        if zones.nr_zones != z_n:
            raise ValueError(f"{zones.nr_zones} TickZones rows for {z_n} zones")
        b = n // P
        self.Z, self.N, self.B, self.NC = z_n, n, b, n // CH
        self.S = -(-b // SB)
        self.BP = self.S * SB
        i64 = xp.int64
        self.kind = xp.array(kind, dtype=xp.uint8)
        if bool((self.kind > HELD).any()):
            raise ValueError("initial kinds must be FREE..HELD")
        self.bmt = xp.array(xp.asarray(block_mt), dtype=xp.int8).reshape(z_n, b)
        # CMA (tick-model.md 7.1): kernels.contig checks the layout and gives the area
        self.cma_pages = contig.cma_pages(xp, self.bmt)
        self.has_cma = bool((self.cma_pages > 0).any())
        if v6:
            # An order-10 free block over two pageblocks of different types: the upper one
            # takes the lower one's type, as __free_one_page's merge retypes the buddy
            # (tick-model.md 2, Initial state): 6.19 keeps free lists and blocks in step.
            whole = (self.kind.reshape(z_n, b, P) == FREE).all(axis=2)
            pair = whole[:, 0::2] & whole[:, 1::2]
            self.bmt[:, 1::2] = xp.where(pair, self.bmt[:, 0::2], self.bmt[:, 1::2])
        self.skip = xp.zeros((z_n, b), dtype=bool)
        self.bo = xp.full((z_n, n), -1, dtype=xp.int8)
        self.lm = xp.full((z_n, n), -1, dtype=xp.int8)
        self.key = xp.zeros((z_n, n), dtype=i64)
        self.gc = xp.full((z_n, n), -1, dtype=xp.int8)  # order * 3 + list at heads, else -1
        self.kf, self.bof, self.lmf, self.keyf = (
            a.reshape(-1) for a in (self.kind, self.bo, self.lm, self.key)
        )
        # row views: one pageblock (Z * B, 512) or one 1024-page chunk (Z * NC, 1024) a row
        self.kb, self.bob, self.lmb, self.keyb, self.gcb = (
            a.reshape(z_n * b, P) for a in (self.kind, self.bo, self.lm, self.key, self.gc)
        )
        self.gcf = self.gc.reshape(-1)
        self.kc, self.boc = (a.reshape(z_n * (n // CH), CH) for a in (self.kind, self.bo))
        self.nrf = xp.zeros((z_n, NORD, NMT), dtype=i64)
        self.nrff = self.nrf.reshape(-1)
        self.bmax = xp.full((z_n, NG, self.BP), NONE_KEY, dtype=i64)
        self._cell_mark = xp.zeros(self.bmax.size, dtype=bool)  # scratch, all False between uses
        self.sbmax = xp.full((z_n, NG, self.S), NONE_KEY, dtype=i64)
        self.bmaxf, self.sbmaxf = self.bmax.reshape(-1), self.sbmax.reshape(-1)
        self.bmax_rows = self.bmax.reshape(z_n * NG * self.S, SB)  # one superblock a row
        self.sbmax_rows = self.sbmax.reshape(z_n * NG, self.S)
        self.nfree_b = xp.zeros((z_n, b), dtype=i64)
        self.nfile_b = xp.zeros((z_n, b), dtype=i64)
        self.niso_b = xp.zeros((z_n, b), dtype=i64)
        self.nr_free = xp.zeros(z_n, dtype=i64)
        zp = {f: xp.asarray(getattr(zones, f)) for f in zones.__dataclass_fields__}
        self.seed = zp["seed"].astype(xp.uint64)
        self.aorder = zp["attempt_order"].astype(i64)
        self.kmode = zp["kcompactd"].astype(i64)
        self.skip_pinned = zp["skip_pinned"].astype(bool)
        self.stop_wm = zp["stop_below_watermark"].astype(bool)
        self.proact = zp["proactiveness"].astype(i64)
        regions.init(self, zp)  # regions (seed 002): per-zone region state
        self.contig_method = np.asarray(to_numpy(zones.contig_method), dtype=np.int64)  # 7
        self.busy_file = np.asarray(to_numpy(zones.busy_file), dtype=np.float64)
        self.cnt = xp.zeros((z_n, len(COUNTERS)), dtype=i64)

        def zeros() -> Array:
            return xp.zeros(z_n, dtype=i64)

        self.clock = zeros()
        self.cached_migrate = zeros()
        self.cached_free = xp.full(z_n, b - 1, dtype=i64)
        self.considered = zeros()
        self.defer_shift = zeros()
        self.order_failed = xp.full(z_n, NORD, dtype=i64)
        self.flush = xp.zeros(z_n, dtype=bool)
        self.kswapd_awake = xp.zeros(z_n, dtype=bool)
        self.kswapd_order = zeros()
        self.kswapd_reclaimed = zeros()
        self.kswapd_failures = zeros()
        self.kc_max_order = zeros()
        self.kc_pending = xp.zeros(z_n, dtype=bool)
        self.cursor = zeros()
        self.demand = xp.zeros((z_n, NORD), dtype=i64)
        self.proactive_next = xp.full(z_n, program.proactive_period - 1, dtype=i64)
        self._set_wmarks(to_numpy(zones.min_free_kbytes))
        self.ar = xp.arange(CH, dtype=i64)
        self.ar_p = self.ar[:P]
        self.ar11 = self.ar[:NORD]
        self.kind_mt = xp.asarray(_KIND_MT)
        self.fb_table = xp.asarray(np.array(FALLBACKS, dtype=np.int64))
        ctz = np.zeros(CH, dtype=np.int64)
        ctz[1:] = [(i & -i).bit_length() - 1 for i in range(1, CH)]
        self.ctz = xp.asarray(ctz)  # trailing zeros of a page offset inside a block
        self._build()

    # ------------------------------------------------------------------ setup

    def _set_wmarks(self, min_free_kbytes: np.ndarray) -> None:
        xp = self.xp
        shape = (self.Z,)
        w = setup_per_zone_wmarks(
            np.full(shape, self.N, dtype=np.int64),
            np.broadcast_to(np.asarray(min_free_kbytes, dtype=np.int64), shape),
            np.full(shape, self.prog.watermark_scale_factor, dtype=np.int64),
        )
        self.wmin, self.wlow, self.whigh = (xp.asarray(a, dtype=xp.int64) for a in w)

    def _build(self) -> None:
        """Initial buddy state (tick-model.md 2, "Initial state") and every summary."""
        xp, z_n, n = self.xp, self.Z, self.N
        free = (self.kind == FREE).reshape(z_n * self.NC, CH)
        full = _levels_and(xp, free)
        boc = self.bo.reshape(z_n * self.NC, CH)
        for k in range(NORD):  # heads of order k: free at level k, not at level k + 1
            hk = full[k] if k == 10 else _not_under(xp, full[k], full[k + 1])
            boc[:, :: 1 << k][hk] = k
        gid = xp.flatnonzero(self.bof >= 0)  # = z * N + pfn, ascending
        order = self.bof[gid].astype(xp.int64)
        z = gid // n
        pfn = gid % n
        rank = xp.arange(gid.shape[0], dtype=xp.int64) - xp.searchsorted(z, z, side="left") + 1
        key = -rank if self.v6 else rank
        mt = self.bmt[z, pfn >> 9].astype(xp.int64)
        self.clock = xp.bincount(z, minlength=z_n).astype(xp.int64)
        fi = gid
        g = order * NMT + mt
        self.lmf[fi] = mt.astype(xp.int8)
        self.keyf[fi] = key
        self.gcf[fi] = g.astype(xp.int8)
        self.log_fi, self.log_key = fi, key  # the head log (_log_compact): every head
        self._log: list[tuple[Array, Array]] = []
        self._log_n = 0
        self.nrff[...] = xp.bincount(z * NG + g, minlength=z_n * NG)
        # the largest key of a (zone, group, block) is its lowest-PFN head in v6_19 (tail
        # keys -rank) and its highest-PFN head in v4_12 (head keys +rank)
        cid = (z * NG + g) * self.BP + (pfn >> 9)
        if self.v6:
            u, at = xp.unique(cid, return_index=True)
        else:
            u, at = xp.unique(cid[::-1], return_index=True)
            at = cid.shape[0] - 1 - at
        self.bmaxf[u] = key[at]
        self.sbmax[...] = self.bmax.reshape(z_n, NG, self.S, SB).max(axis=3)
        k3 = self.kind.reshape(z_n, self.B, P)
        self.nfree_b = (k3 == FREE).sum(axis=2, dtype=xp.int64)
        self.nfile_b = (k3 == FILE).sum(axis=2, dtype=xp.int64)
        self.niso_b = xp.zeros((z_n, self.B), dtype=xp.int64)
        self.nr_free = self.nfree_b.sum(axis=1)

    # ------------------------------------------------------------------ free lists

    def _idx(self, z: Array, start: Array, size: int) -> Array:
        """Flat page indices (M, size) of windows [start, start + size) of zones z."""
        return (z * self.N + start)[:, None] + self.ar[None, :size]

    def _add_heads(self, z: Array, pfn: Array, o: Array, mt: Array, key: Array) -> None:
        """add_to_free_list for many heads (any zones, duplicates of zones allowed)."""
        xp = self.xp
        if z.shape[0] == 0:
            return
        fi = z * self.N + pfn
        self.bof[fi] = o.astype(xp.int8)
        self.lmf[fi] = mt.astype(xp.int8)
        self.keyf[fi] = key
        g = o * NMT + mt
        self.gcf[fi] = g.astype(xp.int8)
        self._log.append((fi, key))
        self._log_n += fi.shape[0]
        _scatter_add(xp, self.nrff, z * NG + g, 1)
        blk = pfn >> 9
        _scatter_max(xp, self.bmaxf, (z * NG + g) * self.BP + blk, key)
        _scatter_max(xp, self.sbmaxf, (z * NG + g) * self.S + (blk >> 6), key)
        if self.any_evac:  # regions (seed 002): add_to_freelist() queues noted work
            regions.queue_work(self, z)

    def _log_compact(self) -> tuple[Array, Array]:
        """The head log, compacted: (flat index z * N + pfn, key) of every free head.

        Every head ever added is logged with its key (``_build``, ``_add_heads``); an entry
        is alive while its page is still a head with that key (keys are unique in a zone,
        a re-added head gets a new key and a new entry), so the alive entries are exactly
        the heads, each once. Deletions never touch the log.
        """
        xp = self.xp
        if self._log:
            fi = xp.concatenate([self.log_fi] + [a for a, _ in self._log])
            key = xp.concatenate([self.log_key] + [b for _, b in self._log])
        else:
            fi, key = self.log_fi, self.log_key
        alive = (self.bof[fi] >= 0) & (self.keyf[fi] == key)
        self.log_fi, self.log_key = fi[alive], key[alive]
        self._log = []
        self._log_n = 0
        return self.log_fi, self.log_key

    def _del_heads(self, z: Array, pfn: Array) -> None:
        """del_page_from_free_list for many heads; recomputes the groups whose max left."""
        xp = self.xp
        if z.shape[0] == 0:
            return
        fi = z * self.N + pfn
        o = self.bof[fi].astype(xp.int64)
        mt = self.lmf[fi].astype(xp.int64)
        k = self.keyf[fi]
        self.bof[fi] = -1
        self.gcf[fi] = -1
        g = o * NMT + mt
        _scatter_add(xp, self.nrff, z * NG + g, -1)
        blk = pfn >> 9
        hit = k == self.bmaxf[(z * NG + g) * self.BP + blk]
        if bool(hit.any()):
            self._recompute(z[hit], blk[hit], g[hit])

    def _recompute(self, z: Array, blk: Array, g: Array) -> None:
        """Local recomputation of bmax for (zone, block, group) and of its superblock."""
        xp = self.xp
        cid = xp.unique((z * NG + g) * self.BP + blk)
        z = cid // (NG * self.BP)
        g = (cid // self.BP) % NG
        blk = cid % self.BP
        row = z * self.B + blk
        sel = self.gcb[row] == g[:, None]
        self.bmaxf[cid] = xp.where(sel, self.keyb[row], NONE_KEY).max(axis=1)
        srow = (z * NG + g) * self.S + (blk >> 6)
        self.sbmaxf[srow] = self.bmax_rows[srow].max(axis=1)

    def _find(self, z: Array, o: Array, mt: Array) -> tuple[Array, Array, Array, Array]:
        """first(o, mt) search: (superblock row, block, position in block, group keys)."""
        xp = self.xp
        base = z * NG + o * NMT + mt
        if self.any_sorted:  # regions (seed 002): sorted rows search the lowest region
            srow, b = regions.find_block(self, z, base)
        else:
            s = xp.argmax(self.sbmax_rows[base], axis=1)
            srow = base * self.S + s
            b = s * SB + xp.argmax(self.bmax_rows[srow], axis=1)
        row = z * self.B + b
        sel = self.gcb[row] == (base - z * NG)[:, None]
        vals = xp.where(sel, self.keyb[row], NONE_KEY)
        return srow, b, xp.argmax(vals, axis=1), vals

    def _first(self, z: Array, o: Array, mt: Array) -> Array:
        """first(o, mt): the head with the largest key of free_list[o][mt] (must exist)."""
        _, b, j, _ = self._find(z, o, mt)
        return b * P + j

    def _expand(self, z: Array, h: Array, low: Array, high: Array, mt: Array) -> None:
        """expand(): the upper halves go back on list mt with head insertion (KM 2.3)."""
        xp = self.xp
        n = high - low
        rr, i = xp.nonzero(self.ar11[None, :10] < n[:, None])
        if rr.shape[0]:
            order = high[rr] - 1 - i
            zz = z[rr]
            key = self.clock[zz] + 1 + i
            self._add_heads(zz, h[rr] + (xp.int64(1) << order), order, mt[rr], key)
            self.clock[z] += n

    def _move_block_heads(self, z: Array, blk: Array, mt: Array, tail: bool) -> None:
        """Move every free head of pageblock blk to list mt, ascending PFN (move_to_free_list)."""
        xp = self.xp
        bo = self.bob[z * self.B + blk]
        heads = bo >= 0
        rr, pp = xp.nonzero(heads)
        rank = xp.cumsum(heads, axis=1, dtype=xp.int32)[rr, pp]
        zz = z[rr]
        keyabs = self.clock[zz] + rank
        pfn = blk[rr] * P + pp
        o = bo[rr, pp].astype(xp.int64)
        self._del_heads(zz, pfn)
        self._add_heads(zz, pfn, o, mt[rr], -keyabs if tail else keyabs)
        self.clock[z] += heads.sum(axis=1)

    def _relist_head(self, z: Array, pfn: Array, mt: Array) -> None:
        """list_move (head) of single heads to list mt: key = +(++clock)."""
        o = self.bof[z * self.N + pfn].astype(self.xp.int64)
        self._del_heads(z, pfn)
        self.clock[z] += 1
        self._add_heads(z, pfn, o, mt, self.clock[z].copy())

    # ------------------------------------------------------------------ allocation

    def _smallest_order(self, z: Array, order: Array, mt: Array) -> tuple[Array, Array]:
        nr = self.nrf[z, :, mt]
        cand = (nr > 0) & (self.ar11[None, :] >= order[:, None])
        return cand.any(axis=1), self.xp.argmax(cand, axis=1)

    def _take(self, z: Array, o: Array, mt: Array, order: Array) -> Array:
        """first + del + expand (distinct zones); the group's new block max comes from the
        same pageblock window first() read."""
        xp = self.xp
        srow, b, j, vals = self._find(z, o, mt)
        h = b * P + j
        g = o * NMT + mt
        self.bof[z * self.N + h] = -1
        self.gcf[z * self.N + h] = -1
        self.nrff[z * NG + g] -= 1
        vals[xp.arange(z.shape[0]), j] = NONE_KEY
        self.bmaxf[(z * NG + g) * self.BP + b] = vals.max(axis=1)
        self.sbmaxf[srow] = self.bmax_rows[srow].max(axis=1)
        if self.any_evac:  # regions (seed 002): rmqueue_del_from_freelist() notes
            regions.note(self, z, h, o, mt)
        self._expand(z, h, order, o, mt)
        return h

    def _fallback_avail(self, z: Array, order: Array, mt: Array) -> tuple[Array, Array, Array]:
        """(M, 11) 'a fallback list of mt has an order-o head', and fallbacks 0 / 1."""
        xp = self.xp
        fb0 = self.fb_table[mt, 0]
        fb1 = self.fb_table[mt, 1]
        rows = xp.arange(z.shape[0])
        nr = self.nrf[z]  # (M, 11, 3)
        has0 = nr[rows, :, fb0] > 0
        has1 = nr[rows, :, fb1] > 0
        return has0, has1, xp.stack([fb0, fb1], axis=1)

    def _rmqueue(self, z: Array, order: Array, mt: Array, cma_first: bool = True) -> Array:
        """rmqueue(order, mt) (tick-model.md 2.2) for rows z; returns head pfn or -1."""
        xp = self.xp
        if self.has_cma and self.v6 and cma_first:  # tick-model.md 7.1: CMA > half of free
            return contig.rmqueue_cma_first(self, z, order, mt)
        h = xp.full(z.shape[0], -1, dtype=xp.int64)
        found, o = self._smallest_order(z, order, mt)
        r = xp.nonzero(found)[0]
        if r.shape[0]:
            h[r] = self._take(z[r], o[r], mt[r], order[r])
        if self.has_cma:  # __rmqueue_cma_fallback after MOVABLE, before the fallbacks
            found = contig.rmqueue_cma_fallback(self, z, order, mt, h, found)
        rest = xp.nonzero(~found)[0]
        if rest.shape[0] == 0:
            return h
        if self.v6:
            hh = self._claim_v6(z[rest], order[rest], mt[rest])
            h[rest] = hh
            rest2 = rest[hh < 0]
            if rest2.shape[0]:
                h[rest2] = self._steal_v6(z[rest2], order[rest2], mt[rest2])
        else:
            ok = self._fallback_v4(z[rest], order[rest], mt[rest])
            r2 = rest[ok]
            if r2.shape[0]:
                found2, o2 = self._smallest_order(z[r2], order[r2], mt[r2])
                assert bool(found2.all())
                h[r2] = self._take(z[r2], o2, mt[r2], order[r2])
        return h

    def _block_free_movable(self, z: Array, blk: Array) -> tuple[Array, Array]:
        k = self.kb[z * self.B + blk]
        free = (k == FREE).sum(axis=1)
        mov = ((k == ANON) | (k == FILE) | (k == PIN)).sum(axis=1)
        return free, mov

    def _claim_v6(self, z: Array, order: Array, mt: Array) -> Array:
        """__rmqueue_claim (6.19)."""
        xp = self.xp
        m_n = z.shape[0]
        h = xp.full(m_n, -1, dtype=xp.int64)
        live = xp.ones(m_n, dtype=bool)
        has0, has1, fbs = self._fallback_avail(z, order, mt)
        # can_claim(o, M) is false below order 4 (find_suitable_fallback == -2: break)
        cand = (has0 | has1) & (self.ar11[None, :] >= order[:, None])
        cand &= (mt != MT_M)[:, None] | (self.ar11[None, :] >= 4)
        orders = np.nonzero(to_numpy(cand.any(axis=0)))[0][::-1]
        for o in (int(x) for x in orders):
            if not bool(live.any()):
                break
            act = live & cand[:, o]
            r = xp.nonzero(act)[0]
            if r.shape[0] == 0:
                continue
            fb = xp.where(has0[r, o], fbs[r, 0], fbs[r, 1])
            zz = z[r]
            oo = xp.full(r.shape[0], o, dtype=xp.int64)
            hh = self._first(zz, oo, fb)
            if o >= 9:
                self._del_heads(zz, hh)
                self.bmt[zz, hh >> 9] = mt[r].astype(xp.int8)
                if o == 10:
                    self.bmt[zz, (hh >> 9) + 1] = mt[r].astype(xp.int8)
                if self.any_evac:  # regions (seed 002): rmqueue_del_from_freelist() notes
                    regions.note(self, zz, hh, oo, fb)
                self._expand(zz, hh, order[r], oo, mt[r])
                h[r] = hh
                live[r] = False
                continue
            blk = hh >> 9
            free, mov = self._block_free_movable(zz, blk)
            mtr = mt[r]
            alike = xp.where(mtr == MT_M, mov, xp.where(fb == MT_M, P - free - mov, 0))
            claim = free + alike >= P // 2
            rc = r[claim]
            if rc.shape[0]:
                self._move_block_heads(z[rc], blk[claim], mt[rc], tail=True)
                self.bmt[z[rc], blk[claim]] = mt[rc].astype(xp.int8)
                f2, o2 = self._smallest_order(z[rc], order[rc], mt[rc])
                h[rc] = self._take(z[rc], o2, mt[rc], order[rc])
                live[rc] = False
        return h

    def _steal_v6(self, z: Array, order: Array, mt: Array) -> Array:
        """__rmqueue_steal (6.19): the block type is unchanged."""
        xp = self.xp
        h = xp.full(z.shape[0], -1, dtype=xp.int64)
        has0, has1, fbs = self._fallback_avail(z, order, mt)
        avail = (has0 | has1) & (self.ar11[None, :] >= order[:, None])
        found = avail.any(axis=1)
        o = xp.argmax(avail, axis=1)
        r = xp.nonzero(found)[0]
        if r.shape[0]:
            o = o[r]
            fb = xp.where(has0[r, o], fbs[r, 0], fbs[r, 1])
            h[r] = self._take(z[r], o, fb, order[r])
        return h

    def _fallback_v4(self, z: Array, order: Array, mt: Array) -> Array:
        """One pass of 4.12's __rmqueue_fallback; True where a block changed lists."""
        xp = self.xp
        has0, has1, fbs = self._fallback_avail(z, order, mt)
        avail = (has0 | has1) & (self.ar11[None, :] >= order[:, None])
        found = avail.any(axis=1)
        o = 10 - xp.argmax(avail[:, ::-1], axis=1)
        r = xp.nonzero(found)[0]
        if r.shape[0] == 0:
            return found
        o = o[r]
        zz = z[r]
        mtr = mt[r]
        fb = xp.where(has0[r, o], fbs[r, 0], fbs[r, 1])
        hh = self._first(zz, o, fb)
        blk = hh >> 9
        old = self.bmt[zz, blk].astype(xp.int64)
        big = o >= 9
        single = ~big & ~((o >= 4) | (mtr != MT_M))
        whole = ~big & ~single
        if bool(big.any()):
            self.bmt[zz[big], blk[big]] = mtr[big].astype(xp.int8)
            b10 = big & (o == 10)
            self.bmt[zz[b10], blk[b10] + 1] = mtr[b10].astype(xp.int8)
        ones = big | single
        if bool(ones.any()):
            self._relist_head(zz[ones], hh[ones], mtr[ones])
        if bool(whole.any()):
            zw, bw, mw = zz[whole], blk[whole], mtr[whole]
            free, mov = self._block_free_movable(zw, bw)
            self._move_block_heads(zw, bw, mw, tail=False)
            alike = xp.where(mw == MT_M, mov, xp.where(old[whole] == MT_M, P - free - mov, 0))
            claim = free + alike >= P // 2
            self.bmt[zw[claim], bw[claim]] = mw[claim].astype(xp.int8)
        return found

    def _set_span(self, z: Array, h: Array, order: Array, kind: Array) -> None:
        """The caller's kind on [h, h + 2^order) of freshly allocated (FREE) pages."""
        xp = self.xp
        size = xp.int64(1) << order
        if bool((order == 0).all()):
            self.kf[z * self.N + h] = kind.astype(xp.uint8)
            blk = h >> 9
            self.nfree_b[z, blk] -= 1
            self.nfile_b[z, blk] += (kind == FILE).astype(xp.int64)
        else:
            idx = self._idx(z, h, CH)
            sel = self.ar[None, :] < size[:, None]
            rr, cc = xp.nonzero(sel)
            self.kf[idx[rr, cc]] = kind[rr].astype(xp.uint8)
            first = xp.minimum(size, P)
            blk = h >> 9
            self.nfree_b[z, blk] -= first
            self.nfile_b[z, blk] += (kind == FILE) * first
            two = size > P
            if bool(two.any()):
                self.nfree_b[z[two], blk[two] + 1] -= P
                self.nfile_b[z[two], blk[two] + 1] += (kind[two] == FILE) * P
        self.nr_free[z] -= size

    def _alloc(self, z: Array, order: Array, mt: Array, kind: Array) -> Array:
        """rmqueue and the caller's kind on the block; head pfn or -1."""
        h = self._rmqueue(z, order, mt)
        ok = h >= 0
        if bool(ok.any()):
            self._set_span(z[ok], h[ok], order[ok], kind[ok])
        return h

    def _wmark_ok(self, z: Array, order: Array, mark: Array, cma: Any = None) -> Array:
        """zone_watermark_ok (tick-model.md 2.3); cma: ALLOC_CMA per row (7.1), None = all."""
        if self.has_cma and cma is not None:
            return contig.wmark_ok_cma(self, z, order, mark, cma)
        free = self.nr_free[z] - ((self.xp.int64(1) << order) - 1)
        ok = free > mark
        if self.xp is np and not order.any():
            return ok
        tot = self.nrf[z].sum(axis=2)
        high = ((tot > 0) & (self.ar11[None, :] >= order[:, None])).any(axis=1)
        return ok & ((order == 0) | high)

    def _get_page(self, z: Array, order: Array, mark: Array, mt: Array, kind: Array) -> Array:
        xp = self.xp
        h = xp.full(z.shape[0], -1, dtype=xp.int64)
        ok = xp.nonzero(self._wmark_ok(z, order, mark, mt == MT_M))[0]
        if ok.shape[0]:
            h[ok] = self._alloc(z[ok], order[ok], mt[ok], kind[ok])
        return h

    # ------------------------------------------------------------------ freeing

    def _free_rows(
        self,
        rz: Array,
        rc: Array,
        mask: Array,
        unit_head: Array | None = None,
        unit_order: Array | None = None,
        key_base: Array | None = None,
    ) -> None:
        """Free ``mask`` pages of 1024-page chunks (rows sorted by zone, chunk, distinct).

        Equal to the ascending sequence of __free_one_page(pfn, 0) per zone, or with
        ``unit_head`` one __free_one_page(head, order) per row (module docstring).
        ``key_base`` (per row): the clock value just before the row's first call, when the
        calls of a zone are not in row order (default: the zone's clock plus the calls of
        its earlier rows).
        """
        xp = self.xp
        m_n = rz.shape[0]
        if m_n == 0:
            return
        crow = rz * self.NC + rc
        old_b = self.boc[crow]
        new_k = xp.where(mask, FREE, self.kc[crow]).astype(xp.uint8)
        self.kc[crow] = new_k
        ustart = mask if unit_head is None else self.ar[None, :] == unit_head[:, None]
        ucum = xp.cumsum(ustart, axis=1, dtype=xp.int32)  # <= 1024: int32 halves the pass
        nu = ucum[:, -1].astype(xp.int64)
        excl = xp.cumsum(nu) - nu
        base = excl - excl[xp.searchsorted(rz, rz, side="left")]
        full = _levels_and(xp, new_k == FREE)
        heads = _heads_from_levels(xp, full)
        anyf = mask
        last = xp.where(mask, self.ar[None, :], -1)
        aff_page = xp.zeros((m_n, CH), dtype=bool)
        new = []
        for k in range(NORD):
            if k:
                anyf = anyf[:, 0::2] | anyf[:, 1::2]
                last = xp.maximum(last[:, 0::2], last[:, 1::2])
            aff = heads[k] & anyf
            rr, jj = xp.nonzero(aff)
            if rr.shape[0] == 0:
                continue
            aff_page |= xp.repeat(aff, 1 << k, axis=1)
            lp = last[rr, jj]
            zz = rz[rr]
            before = self.clock[zz] + base[rr] if key_base is None else key_base[rr]
            keyabs = before + ucum[rr, lp]
            uh = lp if unit_head is None else unit_head[rr]
            mt = self.bmt[zz, (rc[rr] * CH + uh) >> 9].astype(xp.int64)
            pos = jj << k
            if k < 9:
                par = pos & ~(1 << k)
                pbud = par ^ (2 << k)
                t_new = heads[k + 1][rr, pbud >> (k + 1)]
                t_old = old_b[rr, pbud] == k + 1
                tail = xp.where(pbud < par, t_new, t_old)
                key = xp.where(tail, -keyabs, keyabs)
            else:
                key = keyabs
            if k == 10 and self.v6:
                merged = xp.ones(rr.shape[0], dtype=bool)
                if unit_order is not None:
                    merged = unit_order[rr] < 10
                zm, cm, mm = zz[merged], rc[rr][merged], mt[merged].astype(xp.int8)
                self.bmt[zm, 2 * cm] = mm
                self.bmt[zm, 2 * cm + 1] = mm
            new.append((zz, rc[rr] * CH + pos, xp.full(rr.shape[0], k, dtype=xp.int64), mt, key))
        dr, dp = xp.nonzero((old_b >= 0) & aff_page)
        self._del_heads(rz[dr], rc[dr] * CH + dp)
        if new:
            self._add_heads(*(xp.concatenate(c) for c in zip(*new, strict=True)))
        _scatter_add(xp, self.clock, rz, nu)
        _scatter_add(xp, self.nr_free, rz, mask.sum(axis=1, dtype=xp.int64))
        k3 = new_k.reshape(m_n, 2, P)
        for arr, kv in ((self.nfree_b, FREE), (self.nfile_b, FILE), (self.niso_b, ISOFREE)):
            cnt = (k3 == kv).sum(axis=2, dtype=xp.int64)
            arr[rz, 2 * rc] = cnt[:, 0]
            arr[rz, 2 * rc + 1] = cnt[:, 1]

    # "auto": sparse frees page by page (rounds), dense ones per chunk; tests force either.
    FREE_MODE = "auto"

    def _free_pfns(self, z: Array, pfn: Array) -> None:
        """Free distinct pages (any order), per zone in ascending PFN order."""
        xp = self.xp
        if z.shape[0] == 0:
            return
        gid = xp.sort(z * self.N + pfn)
        cid = gid >> 10  # = z * NC + chunk
        first = xp.searchsorted(cid, cid, side="left")
        nr_chunks = int((first == xp.arange(gid.shape[0])).sum())
        mode = self.FREE_MODE
        if mode == "sparse" or (mode == "auto" and gid.shape[0] < 8 * nr_chunks):
            self._free_sparse(gid // self.N, gid % self.N, xp.arange(gid.shape[0]) - first)
            return
        u, inv = xp.unique(cid, return_inverse=True)
        mask = xp.zeros((u.shape[0], CH), dtype=bool)
        mask[inv.reshape(-1), gid & (CH - 1)] = True
        self._free_rows(u // self.NC, u % self.NC, mask)

    def _free_sparse(self, z: Array, pfn: Array, rnd: Array) -> None:
        """__free_one_page(pfn, 0) page by page; z, pfn sorted by (zone, pfn).

        Pages of different 1024-page chunks never interact (every buddy, order+1 buddy and
        v6_19 retyped block of a free lies in its chunk), so round r frees the r-th page
        of every chunk at once (``rnd``), each with its clock value of the zone sequence.
        """
        xp, n = self.xp, self.N
        zfirst = xp.searchsorted(z, z, side="left")
        key_abs = self.clock[z] + xp.arange(z.shape[0]) - zfirst + 1
        top = int(rnd.max()) + 1
        for r in range(top):
            sel = xp.nonzero(rnd == r)[0] if top > 1 else xp.arange(z.shape[0])
            zz, p, ka = z[sel], pfn[sel], key_abs[sel]
            fi = zz * n + p
            old = self.kf[fi]
            self.kf[fi] = FREE
            blk = p >> 9
            self.nfree_b[zz, blk] += 1
            self.nfile_b[zz, blk] -= (old == FILE).astype(xp.int64)
            self.niso_b[zz, blk] -= (old == ISOFREE).astype(xp.int64)
            _scatter_add(xp, self.nr_free, zz, 1)
            mt = self.bmt[zz, blk].astype(xp.int64)
            head = p.copy()
            order = xp.zeros(p.shape[0], dtype=xp.int64)
            act = xp.ones(p.shape[0], dtype=bool)
            gone_z, gone_p = [], []
            for _ in range(10):
                bud = head ^ (xp.int64(1) << order)
                m = act & (self.bof[zz * n + xp.minimum(bud, n - 1)] == order) & (order < 10)
                if not bool(m.any()):
                    break
                gone_z.append(zz[m])
                gone_p.append(bud[m])
                if self.v6:
                    big = m & (order >= 9)
                    if bool(big.any()):
                        self.bmt[zz[big], bud[big] >> 9] = mt[big].astype(xp.int8)
                head = xp.where(m, head & ~(xp.int64(1) << order), head)
                order = xp.where(m, order + 1, order)
                act = m
            low = order < 9
            o2 = xp.minimum(order, 8)
            up = (head & ~(xp.int64(1) << o2)) ^ (xp.int64(2) << o2)
            tail = low & (self.bof[zz * n + up] == o2 + 1)
            if gone_z:
                self._del_heads(xp.concatenate(gone_z), xp.concatenate(gone_p))
            self._add_heads(zz, head, order, mt, xp.where(tail, -ka, ka))
        _scatter_add(xp, self.clock, z, 1)

    def _free_mask(self, zmask: Array) -> None:
        """Free every page set in a (Z, N) mask, one ascending sequence per zone."""
        xp = self.xp
        m3 = zmask.reshape(self.Z * self.NC, CH)
        rows = xp.nonzero(m3.any(axis=1))[0]
        self._free_rows(rows // self.NC, rows % self.NC, m3[rows])

    def _free_units(self, z: Array, h: Array, order: Array, key_base: Array | None = None) -> None:
        """__free_pages(h, order) of one block per row (rows sorted by zone and chunk, at
        most one block per chunk); ``key_base`` as for _free_rows."""
        xp = self.xp
        if z.shape[0] == 0:
            return
        off = h & (CH - 1)
        size = xp.int64(1) << order
        mask = (self.ar[None, :] >= off[:, None]) & (self.ar[None, :] < (off + size)[:, None])
        self._free_rows(z, h >> 10, mask, unit_head=off, unit_order=order, key_base=key_base)

    RECLAIM_WINDOW = 2  # pageblocks from the CLOCK hand read first; 0: always the full walk

    def _reclaim(self, z: Array, n: int = 32) -> Array:
        """reclaim(n): the next n FILE pages from the CLOCK hand, freed ascending.

        Rows whose next RECLAIM_WINDOW pageblocks (from the hand's block, wrapping) hold n
        FILE pages at or after the hand take them from that window alone (the same pages
        the whole-zone walk takes: its first segments are exactly these blocks); the
        others walk the zone (_reclaim_walk).
        """
        xp, b = self.xp, self.B
        m_n = z.shape[0]
        if m_n == 0:
            return xp.zeros(0, dtype=xp.int64)
        w = min(self.RECLAIM_WINDOW, b)
        if w == 0:
            total = self._reclaim_walk(z, n)
            self.kswapd_failures[z[total > 0]] = 0  # reclaim made progress
            return total
        cur = self.cursor[z]
        cb = cur >> 9
        blk = (cb[:, None] + self.ar[None, :w]) % b  # (M, w)
        isfile = self.kb[(z[:, None] * b + blk).reshape(-1)].reshape(m_n, w * P) == FILE
        isfile[:, :P] &= self.ar_p[None, :] >= (cur & (P - 1))[:, None]
        rank = xp.cumsum(isfile, axis=1, dtype=xp.int32)
        ok = rank[:, -1] >= n
        total = xp.full(m_n, n, dtype=xp.int64)
        tr, tp = xp.nonzero(isfile & (rank <= n) & ok[:, None])
        pfn = blk[tr, tp >> 9] * P + (tp & (P - 1))
        last = rank[tr, tp] == n
        self.cursor[z[tr[last]]] = (pfn[last] + 1) % self.N
        rest = xp.nonzero(~ok)[0]
        if rest.shape[0]:
            total[rest] = self._reclaim_walk(z[rest], n)
        self._free_pfns(z[tr], pfn)
        self.kswapd_failures[z[total > 0]] = 0  # reclaim made progress
        return total

    def _reclaim_walk(self, z: Array, n: int = 32) -> Array:
        """reclaim(n) by a walk over every pageblock from the CLOCK hand."""
        xp, b = self.xp, self.B
        cur = self.cursor[z]
        cb = cur >> 9
        off = cur & (P - 1)
        isfile = self.kb[z * self.B + cb] == FILE
        after = isfile & (self.ar_p[None, :] >= off[:, None])
        roll = (cb[:, None] + 1 + self.xp.arange(b - 1, dtype=xp.int64)[None, :]) % b
        mid = xp.take_along_axis(self.nfile_b[z], roll, axis=1)
        seq = xp.concatenate(
            [after.sum(axis=1)[:, None], mid, (isfile & ~after).sum(axis=1)[:, None]], axis=1
        )
        cum = xp.cumsum(seq, axis=1)
        excl = cum - seq
        rr, jj = xp.nonzero((seq > 0) & (excl < n))
        total = xp.minimum(cum[:, -1], n)
        if rr.shape[0] == 0:
            return total
        blk = xp.where((jj == 0) | (jj == b), cb[rr], roll[rr, xp.clip(jj - 1, 0, b - 2)])
        lo = xp.where(jj == 0, off[rr], 0)
        hi = xp.where(jj == b, off[rr], P)
        ar = self.ar_p[None, :]
        f = (self.kb[z[rr] * self.B + blk] == FILE) & (ar >= lo[:, None])
        f &= ar < hi[:, None]
        rank = excl[rr, jj][:, None] + xp.cumsum(f, axis=1, dtype=xp.int32) - 1
        tr, tp = xp.nonzero(f & (rank < n))
        pfn = blk[tr] * P + tp
        zrow = rr[tr]
        is_last = rank[tr, tp] == total[zrow] - 1
        self.cursor[z[zrow[is_last]]] = (pfn[is_last] + 1) % self.N
        self._free_pfns(z[zrow], pfn)
        return total

    # ------------------------------------------------------------------ compaction helpers

    def _buddyinfo(self, z: Array) -> Array:
        return self.nrf[z].sum(axis=2)

    def _compact_suitable_wm(self, z: Array, order: Array) -> Array:
        """__compaction_suitable (tick-model.md 3.1)."""
        wmin = self.wmin[z]
        wm = wmin + (2 << order) + self.xp.where(order > 3, self.wlow[z] - wmin, 0)
        return self.nr_free[z] > wm

    def _suitable(self, z: Array, order: Array, cma: Any = False) -> Array:
        """compaction_suitable -> SUCCESS | SKIPPED | CONTINUE; cma: ALLOC_CMA (7.1)."""
        xp = self.xp
        ok = self._wmark_ok(z, order, self.wmin[z], cma)
        fi = xp.take_along_axis(fragmentation_index(self._buddyinfo(z)), order[:, None], 1)[:, 0]
        fi_ok = (order <= 3) | ~((fi >= 0) & (fi <= 500))
        bad = ~self._compact_suitable_wm(z, order) | ~fi_ok
        return xp.where(ok, SUCCESS, xp.where(bad, SKIPPED, CONTINUE))

    def _deferred(self, z: Array, order: Array) -> Array:
        xp = self.xp
        res = xp.zeros(z.shape[0], dtype=bool)
        c = order >= self.order_failed[z]
        zc = z[c]
        self.considered[zc] += 1
        lim = xp.int64(1) << self.defer_shift[zc]
        over = self.considered[zc] >= lim
        self.considered[zc[over]] = lim[over]
        res[xp.nonzero(c)[0][~over]] = True
        return res

    def _defer(self, z: Array, order: Array) -> None:
        self.considered[z] = 0
        self.defer_shift[z] = self.xp.minimum(self.defer_shift[z] + 1, 6)
        self.order_failed[z] = self.xp.minimum(self.order_failed[z], order)

    def _defer_reset(self, z: Array, order: Array, success: bool) -> None:
        if success:
            self.considered[z] = 0
            self.defer_shift[z] = 0
        up = order >= self.order_failed[z]
        self.order_failed[z[up]] = order[up] + 1

    def _restarting(self, z: Array, order: Array) -> Array:
        return (
            (order >= self.order_failed[z])
            & (self.defer_shift[z] == 6)
            & (self.considered[z] >= 64)
        )

    def _reset_isolation(self, z: Array, check_flush: bool) -> None:
        """__reset_isolation_suitable (v6_19 returns unless compact_blockskip_flush)."""
        if check_flush:
            z = z[self.flush[z]]
        if z.shape[0] == 0:
            return
        self.skip[z] = False
        self.cached_migrate[z] = 0
        self.cached_free[z] = self.B - 1
        self.flush[z] = False

    def _demand_met(self, z: Array) -> Array:
        _, _, suit = fill_contig_page_info(self._buddyinfo(z))
        d = self.demand[z]
        return ((d == 0) | (suit >= d)).all(axis=1)

    def _frag_score(self, z: Array) -> Array:
        return extfrag_for_order(self._buddyinfo(z))[:, 9]

    def _node_score(self, z: Array) -> Array:
        return self.N * self._frag_score(z) // (self.N + 1)

    # ------------------------------------------------------------------ compact_zone

    def _compact(
        self,
        z: Array,
        order: Array,
        mode: int,
        mt: Array,
        direct: bool,
        whole: bool,
        ignore: bool,
        proactive: bool,
        demand: Array,
    ) -> Array:
        """compact_zone(cc) for rows z (distinct zones); returns the status per row."""
        xp = self.xp
        m_n = z.shape[0]
        status = xp.full(m_n, CONTINUE, dtype=xp.int64)
        if m_n == 0:
            return status
        live = xp.ones(m_n, dtype=bool)
        if not proactive:
            chk = order > 0
            r = xp.nonzero(chk)[0]
            s = self._suitable(z[r], order[r], mt[r] == MT_M)
            bad = s != CONTINUE
            status[r[bad]] = s[bad]
            live[r[bad]] = False
        rs = live & (order > 0)
        rs &= self._restarting(z, order)
        self._reset_isolation(z[rs], check_flush=self.v6)
        li = xp.nonzero(live)[0]
        if li.shape[0] == 0:
            return status
        zl = z[li]
        if whole:
            m = xp.zeros(li.shape[0], dtype=xp.int64)
            f = xp.full(li.shape[0], self.B - 1, dtype=xp.int64)
            wz = xp.ones(li.shape[0], dtype=bool)
        else:
            m = self.cached_migrate[zl].copy()
            f = self.cached_free[zl].copy()
            wz = m == 0
        zeros = xp.zeros(li.shape[0], dtype=xp.int64)
        run = _Run(
            z=zl,
            order=order[li],
            mt=mt[li],
            demand=demand[li],
            whole=wz,
            m=m,
            f=f,
            iso=f * P,
            pool=zeros.copy(),
            iif=zeros.copy(),
            ms=zeros.copy(),
            fs=zeros.copy(),
            status=zeros.copy(),
            mode=mode,
            direct=direct,
            ignore=ignore,
            proactive=proactive,
            pinok=~self.skip_pinned[zl],
        )
        act = xp.arange(li.shape[0], dtype=xp.int64)
        while act.shape[0]:
            st = self._finished(run, act)
            done = st != CONTINUE
            run.status[act[done]] = st[done]
            act = act[~done]
            if act.shape[0] == 0:
                break
            src = self._advance_migrate(run, act)
            if src.shape[0]:
                ended = self._process_source(run, src)
                if ended.shape[0]:
                    run.status[ended] = CONTENDED
                    act = act[~xp.isin(act, ended)]
        self._release(run)
        status[li] = run.status
        c = self.cnt
        c[zl, _C["compact_migrate_scanned"]] += run.ms
        c[zl, _C["compact_free_scanned"]] += run.fs
        if not direct:
            c[zl, _C["compact_daemon_migrate_scanned"]] += run.ms
            c[zl, _C["compact_daemon_free_scanned"]] += run.fs
        return status

    def _finished(self, run: _Run, act: Array) -> Array:
        """compact_finished(m, f) (tick-model.md 3.3, KM 4.4)."""
        xp = self.xp
        z = run.z[act]
        st = xp.full(act.shape[0], CONTINUE, dtype=xp.int64)
        met = run.f[act] <= run.m[act]
        if bool(met.any()):
            zm = z[met]
            self.cached_migrate[zm] = 0
            self.cached_free[zm] = self.B - 1
            if run.direct:
                self.flush[zm] = True
            st[met] = xp.where(run.whole[act[met]], COMPLETE, PARTIAL_SKIPPED)
        und = ~met
        if run.proactive:
            low = 100 - self.proact[z]
            st = xp.where(und & (self._frag_score(z) <= low), SUCCESS, st)
            return st
        order = run.order[act]
        und &= order != -1
        if not bool(und.any()):
            return st
        r = xp.nonzero(und)[0]
        zr, orr = z[r], order[r]
        stopbw = self.stop_wm[zr] & ~self._compact_suitable_wm(zr, orr)
        res = xp.where(stopbw, PARTIAL_SKIPPED, CONTINUE)
        dem = ~stopbw & run.demand[act[r]] & (self.demand[zr] > 0).any(axis=1)
        if bool(dem.any()):
            res[dem] = xp.where(self._demand_met(zr[dem]), SUCCESS, CONTINUE)
        rest = ~stopbw & ~dem
        mtr = run.mt[act[r]]
        nr = self.nrf[zr]  # (R, 11, 3)
        rows = xp.arange(r.shape[0])
        own = nr[rows, :, mtr] > 0
        fb = (nr[rows, :, self.fb_table[mtr, 0]] > 0) | (nr[rows, :, self.fb_table[mtr, 1]] > 0)
        claim = (self.ar11[None, :] >= 4) | (mtr != MT_M)[:, None]
        own |= (mtr == MT_M)[:, None] & (nr[rows, :, MT_CMA] > 0)  # CONFIG_CMA (7.1)
        okk = (own | (claim & fb)) & (self.ar11[None, :] >= orr[:, None])
        res = xp.where(rest & okk.any(axis=1), SUCCESS, res)
        st[r] = res
        return st

    def _advance_migrate(self, run: _Run, act: Array, w: int = 32) -> Array:
        """isolate_migratepages' search for the next source block; rows with m < f."""
        xp = self.xp
        todo = act
        arw = self.ar[None, :w]
        while todo.shape[0]:
            z = run.z[todo]
            mm = run.m[todo]
            ff = run.f[todo]
            blocks = mm[:, None] + arw
            inr = blocks < ff[:, None]
            bc = xp.minimum(blocks, self.B - 1)
            skip_ok = ~self.skip[z[:, None], bc]
            if run.ignore:
                skip_ok |= True
            bm = self.bmt[z[:, None], bc]
            if self.v6:
                if run.mode == ASYNC and run.direct:
                    mtt = run.mt[todo][:, None]
                    async_ok = (bm == mtt) | ((mtt == MT_M) & (bm == MT_CMA))  # movable
                else:
                    async_ok = xp.ones_like(inr)
            else:
                async_ok = (
                    ((bm == MT_M) | (bm == MT_CMA)) if run.mode == ASYNC else xp.ones_like(inr)
                )
            ok = skip_ok & async_ok & inr
            found = ok.any(axis=1)
            nskip = xp.where(found, xp.argmax(ok, axis=1), inr.sum(axis=1))
            if self.v6:
                sk = (arw < nskip[:, None]) & skip_ok & inr
                best = xp.where(sk, blocks + 1, -1).max(axis=1)
                self.cached_migrate[z] = xp.maximum(self.cached_migrate[z], best)
            run.m[todo] = mm + nskip
            todo = todo[~found & (run.m[todo] < ff)]
        return act[run.m[act] < run.f[act]]

    def _process_source(self, run: _Run, rows: Array) -> Array:
        """process_source_block(m) (tick-model.md 3.4); returns rows that end CONTENDED."""
        xp = self.xp
        z = run.z[rows]
        m = run.m[rows]
        m_n = rows.shape[0]
        k = self.kb[z * self.B + m]
        bo = self.bob[z * self.B + m].astype(xp.int64)
        head10 = bo[:, 0] == 10
        if self.v6:
            ms = xp.where(head10, 2 * P, P)
        else:
            hs = xp.where((bo >= 0) & (bo <= 9), (xp.int64(1) << xp.maximum(bo, 0)) - 1, 0)
            ms = xp.where(head10, 1, P - hs.sum(axis=1))
        run.ms[rows] += ms  # an order-10 head: low_pfn is clamped to the block end
        pinok = run.pinok[rows][:, None]
        ispin = k == PIN
        cand = (k == ANON) | (k == FILE) | (ispin & pinok)
        if run.mode == ASYNC and run.direct:
            sof = run.order[rows] > 0
            if bool(sof.any()):
                bad = ~(cand | (k == FREE))
                co = xp.minimum(run.order[rows], 9)
                drop = xp.zeros_like(bad)
                lvl = bad
                for lv in range(1, 10):
                    lvl = lvl[:, 0::2] | lvl[:, 1::2]
                    sel = sof & (co == lv)
                    if bool(sel.any()):
                        drop[sel] = xp.repeat(lvl[sel], 1 << lv, axis=1)
                cand &= ~drop
        ncand = cand.sum(axis=1, dtype=xp.int64)
        c = self.cnt
        c[z, _C["compact_isolated"]] += ncand
        c[z, _C["lru_lock_acquisitions"]] += cand.reshape(m_n, P // 32, 32).any(axis=2).sum(1)
        nonpin = cand & ~ispin
        need = nonpin.sum(axis=1, dtype=xp.int64)
        self._isolate_free(run, rows, need)
        avail = run.pool[rows]
        ntake = xp.minimum(need, avail)
        enomem = need > avail
        rank = xp.cumsum(nonpin, axis=1, dtype=xp.int32) - 1
        migrate = nonpin & (rank < ntake[:, None])
        stop = xp.where(enomem, xp.argmax(nonpin & (rank == avail[:, None]), axis=1), P)
        pin_fail = (cand & ispin & (self.ar_p[None, :] < stop[:, None])).sum(axis=1)
        c[z, _C["pgmigrate_fail"]] += pin_fail + enomem
        c[z, _C["pgmigrate_success"]] += ntake
        sr, sp = xp.nonzero(migrate)
        if sr.shape[0]:
            tr, tpfn = self._targets(run, rows, ntake)
            tz = z[tr]
            moved = k[sr, sp]
            self.kf[tz * self.N + tpfn] = moved
            tb = tpfn >> 9
            _scatter_add(xp, self.niso_b.reshape(-1), tz * self.B + tb, -1)
            isf = moved == FILE
            _scatter_add(xp, self.nfile_b.reshape(-1), (tz * self.B + tb)[isf], 1)
            run.pool[rows] -= ntake
            mask = xp.zeros((m_n, CH), dtype=bool)
            half = (m & 1) * P
            mask[sr, half[sr] + sp] = True
            has = xp.nonzero(ntake > 0)[0]
            self._free_rows(z[has], m[has] >> 1, mask[has])
        f = run.f[rows]
        contended = enomem & (f > m)
        good = ~enomem
        if bool(good.any()):
            g = rows[good]
            zg, mg = z[good], m[good]
            if self.v6:
                upd = xp.ones(g.shape[0], dtype=bool)
            else:
                upd = (ncand[good] == 0) & (not run.ignore)
            self.skip[zg[upd], mg[upd]] = True
            self.cached_migrate[zg[upd]] = xp.maximum(self.cached_migrate[zg[upd]], mg[upd] + 1)
            del g
        run.m[rows] = xp.where(contended, m, m + 1)
        return rows[contended]

    def _targets(self, run: _Run, rows: Array, ntake: Array) -> tuple[Array, Array]:
        """The ntake lowest-PFN ISOFREE pages of each row: (row index into rows, pfn)."""
        xp = self.xp
        z = run.z[rows]
        nb = self.niso_b[z]
        cum = xp.cumsum(nb, axis=1)
        excl = cum - nb
        rr, bb = xp.nonzero((nb > 0) & (excl < ntake[:, None]))
        iso = self.kb[z[rr] * self.B + bb] == ISOFREE
        rank = excl[rr, bb][:, None] + xp.cumsum(iso, axis=1, dtype=xp.int32) - 1
        tr, tp = xp.nonzero(iso & (rank < ntake[rr][:, None]))
        return rr[tr], bb[tr] * P + tp

    def _isolate_free(self, run: _Run, rows: Array, need: Array, w: int = 32) -> None:
        """isolate_freepages() until the pool holds ``need`` pages (tick-model.md 3.5)."""
        xp = self.xp
        act, nd = rows, need
        thr_all = xp.where(run.order > 0, run.order, 9)
        arw = self.ar[None, :w]
        while act.shape[0]:
            keep = (run.pool[act] < nd) & (run.f[act] > run.m[act])
            act, nd = act[keep], nd[keep]
            if act.shape[0] == 0:
                break
            f = run.f[act]
            iso = run.iso[act]
            z = run.z[act]
            be = iso == (f + 1) * P
            if bool(be.any()):
                rb = act[be]
                zb, fb = z[be], f[be]
                if self.v6:
                    upd = xp.ones(rb.shape[0], dtype=bool)
                else:
                    upd = (run.iif[rb] == 0) & (not run.ignore)
                self.skip[zb[upd], fb[upd]] = True
                self.cached_free[zb[upd]] = xp.minimum(self.cached_free[zb[upd]], fb[upd] - 1)
                run.f[rb] = fb - 1
                run.iso[rb] = (fb - 1) * P
                run.iif[rb] = 0
                # the next block's search runs in this round (what the next round would do)
                f = xp.where(be, f - 1, f)
                iso = xp.where(be, f * P, iso)
            bs = iso == f * P
            scan = ~bs
            if bool(bs.any()):
                rs = act[bs]
                zs, fs, ms = z[bs], f[bs], run.m[rs]
                blocks = fs[:, None] - arw
                inr = blocks > ms[:, None]
                bc = xp.maximum(blocks, 0)
                bmz = self.bmt[zs[:, None], bc]
                ok = (bmz == MT_M) | (bmz == MT_CMA)  # is_migrate_movable (7.1)
                if not run.ignore:
                    ok &= ~self.skip[zs[:, None], bc]
                fp = zs[:, None] * self.N + bc * P
                big = (self.kf[fp] == FREE) & (self.bof[fp] >= thr_all[rs][:, None])
                ok &= ~big & inr
                found = ok.any(axis=1)
                i = xp.argmax(ok, axis=1)
                at_f = found & (i == 0)
                mv = ~at_f
                nf = xp.where(found, fs - i, xp.maximum(fs - w, ms))
                run.f[rs[mv]] = nf[mv]
                run.iso[rs[mv]] = nf[mv] * P
                scan[xp.nonzero(bs)[0][at_f]] = True
            if bool(scan.any()):
                ended = self._scan_free_block(run, act[scan], nd[scan])
                drop = xp.zeros(act.shape[0], dtype=bool)
                drop[xp.nonzero(scan)[0][ended]] = True
                act, nd = act[~drop], nd[~drop]

    def _scan_free_block(self, run: _Run, rows: Array, need: Array) -> Array:
        """isolate_freepages_block over block f from iso; True where the call ends."""
        xp = self.xp
        z = run.z[rows]
        f = run.f[rows]
        off = run.iso[rows] - f * P
        m_n = rows.shape[0]
        brow = z * self.B + f
        bo = self.bob[brow].astype(xp.int64)
        ar = self.ar_p[None, :]
        head = (bo >= 0) & (bo <= 9) & (ar >= off[:, None])
        size = xp.where(head, xp.int64(1) << xp.maximum(bo, 0), 0)
        hr, hp = xp.nonzero(head)
        ends = xp.zeros((m_n, P + 1), dtype=xp.int32)
        ends[hr, hp + size[hr, hp]] = 1
        inside = xp.cumsum(head, axis=1, dtype=xp.int32) - xp.cumsum(
            ends[:, :P], axis=1, dtype=xp.int32
        )
        visited = (ar >= off[:, None]) & ((inside == 0) | head)
        hsz = xp.where(visited & head, size, 0)
        before = xp.cumsum(hsz, axis=1) - hsz
        pool0 = run.pool[rows][:, None]
        nr0 = self.nr_free[z][:, None]
        stop1 = visited & (pool0 + before >= need[:, None])
        stop2 = visited & head & ~(nr0 - before > self.wmin[z][:, None] + size)
        stop = stop1 | stop2
        any_stop = stop.any(axis=1)
        sp = xp.where(any_stop, xp.argmax(stop, axis=1), P)
        pre = ar < sp[:, None]
        isoh = visited & head & pre
        if self.v6:
            scanned = xp.where(visited & pre, xp.where(head, size, 1), 0).sum(axis=1)
        else:
            scanned = (visited & pre).sum(axis=1)
        run.fs[rows] += scanned
        amount = xp.where(isoh, size, 0).sum(axis=1)
        ir, ip = xp.nonzero(isoh)
        if ir.shape[0]:
            self._del_heads(z[ir], f[ir] * P + ip)
            ends2 = xp.zeros((m_n, P + 1), dtype=xp.int32)
            ends2[ir, ip + size[ir, ip]] = 1
            span = (
                xp.cumsum(isoh, axis=1, dtype=xp.int32)
                - xp.cumsum(ends2[:, :P], axis=1, dtype=xp.int32)
            ) > 0
            self.kb[brow] = xp.where(span, ISOFREE, self.kb[brow]).astype(xp.uint8)
            self.niso_b[z, f] += amount
            self.nfree_b[z, f] -= amount
            self.nr_free[z] -= amount
            run.pool[rows] += amount
            run.iif[rows] += amount
            self.cnt[z, _C["compact_isolated"]] += amount  # both scanners count (KM 7)
        run.iso[rows] = f * P + sp
        return any_stop

    def _release(self, run: _Run) -> None:
        """Release the pool: every ISOFREE page freed ascending; cached_free moves up."""
        xp = self.xp
        r = xp.nonzero(run.pool > 0)[0]
        if r.shape[0] == 0:
            return
        z = run.z[r]
        has = self.niso_b[z].reshape(r.shape[0], self.NC, 2).sum(axis=2) > 0
        rr, cc = xp.nonzero(has)
        zz = z[rr]
        mask = self.kc[zz * self.NC + cc] == ISOFREE
        top = cc * CH + (CH - 1) - xp.argmax(mask[:, ::-1], axis=1)
        hi = xp.full(self.Z, -1, dtype=xp.int64)
        _scatter_max(xp, hi, zz, top)
        self._free_rows(zz, cc, mask)
        self.cached_free[z] = xp.maximum(self.cached_free[z], hi[z] >> 9)
        run.pool[r] = 0

    # ------------------------------------------------------------------ callers

    def _direct_compact(self, z: Array, order: Array, prio: int, mt: Array) -> tuple[Array, Array]:
        """direct_compact(order, prio) (tick-model.md 3.6); (HELD head or -1, status)."""
        xp = self.xp
        m_n = z.shape[0]
        status = xp.full(m_n, DEFERRED, dtype=xp.int64)
        h = xp.full(m_n, -1, dtype=xp.int64)
        nd = xp.nonzero(~self._deferred(z, order))[0]
        if nd.shape[0]:
            zn, on = z[nd], order[nd]
            st = self._compact(
                zn, on, prio, mt[nd], True, False, False, False, xp.zeros(nd.shape[0], bool)
            )
            status[nd] = st
            s = st == SUCCESS
            self._defer_reset(zn[s], on[s], False)
            if prio != ASYNC:
                d = (st == COMPLETE) | (st == PARTIAL_SKIPPED)
                self._defer(zn[d], on[d])
        nostall = status == SKIPPED
        if not self.v6:
            nostall |= status == DEFERRED
        stall = xp.nonzero(~nostall)[0]
        if stall.shape[0]:
            zs, os_ = z[stall], order[stall]
            self.cnt[zs, _C["compact_stall"]] += 1
            hs = self._get_page(
                zs, os_, self.wmin[zs], mt[stall], xp.full(stall.shape[0], HELD, dtype=xp.int64)
            )
            h[stall] = hs
            ok = hs >= 0
            self.flush[zs[ok]] = False
            self._defer_reset(zs[ok], os_[ok], True)
            self.cnt[zs[ok], _C["compact_success"]] += 1
            self.cnt[zs[~ok], _C["compact_fail"]] += 1
        return h, status

    def _wakeup_kcompactd(self, z: Array, order: Array) -> None:
        xp = self.xp
        keep = (order != 0) & (self.kmode[z] != KCOMPACTD_NONE)
        z, order = z[keep], order[keep]
        if z.shape[0] == 0:
            return
        d = self.demand[z]
        pd = (self.kmode[z] == KCOMPACTD_PROACTIVE_DEMAND) & (d > 0).any(axis=1)
        top = NORD - 1 - xp.argmax((d > 0)[:, ::-1], axis=1)
        order = xp.where(pd, xp.maximum(order, top), order)
        mo = xp.maximum(self.kc_max_order[z], order)
        self.kc_max_order[z] = mo
        cont = self._suitable(z, mo) == CONTINUE
        self.kc_pending[z[cont]] = True

    def _wakeup_kswapd(self, z: Array, order: Array, direct_reclaim: bool) -> None:
        # hopeless (kswapd_failures >= MAX_RECLAIM_RETRIES) or pgdat_balanced()
        bal = (self.kswapd_failures[z] >= MAX_RECLAIM_RETRIES) | self._wmark_ok(
            z,
            order,
            self.whigh[z],
            False,  # pgdat_balanced: no ALLOC_CMA (7.1)
        )
        if self.v6 and not direct_reclaim:
            self._wakeup_kcompactd(z[bal], order[bal])
        nb = ~bal
        z, order = z[nb], order[nb]
        wake = z[~self.kswapd_awake[z]]
        self.kswapd_awake[wake] = True
        self.kswapd_reclaimed[wake] = 0
        self.cnt[wake, _C["kswapd_wake"]] += 1
        self.kswapd_order[z] = self.xp.maximum(self.kswapd_order[z], order)

    def _kswapd_step(self) -> None:
        xp = self.xp
        act = xp.nonzero(self.kswapd_awake)[0]
        for _ in range(self.prog.kswapd_rounds):
            if act.shape[0] == 0:
                break
            ko = self.kswapd_order[act]
            o = xp.where(self.kswapd_reclaimed[act] < (2 << ko), ko, 0)
            ok = self._wmark_ok(act, o, self.whigh[act], False)
            sl = act[ok]
            if sl.shape[0]:
                self._reset_isolation(sl, check_flush=True)
                self._wakeup_kcompactd(sl, self.kswapd_order[sl].copy())
                self.kswapd_awake[sl] = False
                self.kswapd_order[sl] = 0
            act = act[~ok]
            n = self._reclaim(act, 32)
            self.kswapd_reclaimed[act] += n
            self.cnt[act, _C["pgsteal_kswapd"]] += n
            gu = act[n == 0]  # nothing to reclaim: the node is hopeless, kswapd sleeps
            if gu.shape[0]:
                self.kswapd_failures[gu] = MAX_RECLAIM_RETRIES
                self._reset_isolation(gu, check_flush=True)
                self._wakeup_kcompactd(gu, self.kswapd_order[gu].copy())
                self.kswapd_awake[gu] = False
                self.kswapd_order[gu] = 0
            act = act[n > 0]

    def _kcompactd(self) -> None:
        xp = self.xp
        z = xp.nonzero(self.kc_pending)[0]
        if z.shape[0] == 0:
            return
        self.cnt[z, _C["compact_daemon_wake"]] += 1
        order = self.kc_max_order[z].copy()
        go = ~self._deferred(z, order)
        r = xp.nonzero(go)[0]
        r = r[self._suitable(z[r], order[r]) == CONTINUE]
        if r.shape[0]:
            zr, orr = z[r], order[r]
            st = self._compact(
                zr,
                orr,
                SYNC_LIGHT,
                xp.full(r.shape[0], MT_U, dtype=xp.int64),
                False,
                False,
                not self.v6,
                False,
                self.kmode[zr] == KCOMPACTD_PROACTIVE_DEMAND,
            )
            s = st == SUCCESS
            self._defer_reset(zr[s], orr[s], False)
            d = (st == COMPLETE) | (st == PARTIAL_SKIPPED)
            self._defer(zr[d], orr[d])
        self.kc_max_order[z] = 0
        self.kc_pending[z] = False
        self.demand[z] = 0

    def _proactive(self, t: int) -> None:
        xp = self.xp
        period = self.prog.proactive_period
        z = xp.nonzero((self.kmode == KCOMPACTD_PROACTIVE_SCORE) & (self.proactive_next <= t))[0]
        if z.shape[0] == 0:
            return
        self.proactive_next[z] = t + period
        low = 100 - self.proact[z]
        high = xp.minimum(low + xp.minimum(10, low // 2), 100)
        score = self._node_score(z)
        go = (self.proact[z] > 0) & ~self.kswapd_awake[z] & (score > high)
        z, prev = z[go], score[go]
        if z.shape[0] == 0:
            return
        self._compact(
            z,
            xp.full(z.shape[0], -1, dtype=xp.int64),
            SYNC_LIGHT,
            xp.full(z.shape[0], MT_U, dtype=xp.int64),
            False,
            True,
            True,
            True,
            xp.zeros(z.shape[0], dtype=bool),
        )
        back = self._node_score(z) >= prev
        self.proactive_next[z[back]] = t + 64 * period

    # ------------------------------------------------------------------ a tick

    # "auto": order-0 background allocations in bulk rounds (_bulk_round) with single
    # general events where the bulk model stops; "seq": every event one at a time (tests).
    BG_MODE = "auto"
    BG_ROUNDS = 8  # bulk rounds per tick before the remaining events go one at a time

    def _background(self, kinds: Array) -> None:
        """Step 3: a tick's order-0 allocations (tick-model.md 4), all zones together.

        Bulk rounds: each round applies, per zone, the longest run of events from
        ``start`` that __rmqueue_smallest serves with NR_FREE > wmark_min (_bulk_round),
        then the event that stopped it runs alone through the general path
        (_background_event). After BG_ROUNDS rounds the rest runs event by event.
        """
        xp = self.xp
        z_n, a_n = kinds.shape
        if a_n == 0:
            return
        start = xp.zeros(z_n, dtype=xp.int64)
        if self.BG_MODE == "seq":
            self._background_seq(kinds, start)
            return
        for _ in range(self.BG_ROUNDS):
            j0 = self._bulk_round(kinds, start)
            blk = xp.nonzero(j0 < a_n)[0]
            start = xp.full(z_n, a_n, dtype=xp.int64)
            if blk.shape[0] == 0:
                return
            jb = j0[blk]
            self._background_event(blk, kinds[blk, jb])
            start[blk] = jb + 1
            if bool((start >= a_n).all()):
                return
        self._background_seq(kinds, start)

    def _background_seq(self, kinds: Array, start: Array) -> None:
        """Events j >= start[z] of every zone, one event at a time (all zones per event)."""
        xp = self.xp
        a_n = kinds.shape[1]
        lo = int(start.min())
        for j in range(lo, a_n):
            z = xp.nonzero(start <= j)[0]
            if z.shape[0]:
                self._background_event(z, kinds[z, j])

    def _background_event(self, z: Array, kd: Array) -> None:
        """One background allocation (tick-model.md 4, step 3) in each zone of z."""
        xp = self.xp
        c = self.cnt
        zero = xp.zeros(z.shape[0], dtype=xp.int64)
        mt = self.kind_mt[kd]
        h = xp.full(z.shape[0], -1, dtype=xp.int64)
        fast = self._wmark_ok(z, zero, self.wlow[z], mt == MT_M)
        fr = xp.nonzero(fast)[0]
        if fr.shape[0]:
            h[fr] = self._alloc(z[fr], zero[fr], mt[fr], kd[fr])
        sr = xp.nonzero(~fast)[0]
        if sr.shape[0]:
            sz = z[sr]
            self._wakeup_kswapd(sz, zero[sr], True)
            hs = self._get_page(sz, zero[sr], self.wmin[sz], mt[sr], kd[sr])
            miss = xp.nonzero(hs < 0)[0]
            if miss.shape[0]:
                zm = sz[miss]
                c[zm, _C["direct_reclaimed"]] += self._reclaim(zm, 32)
                hs[miss] = self._get_page(zm, zero[miss], self.wmin[zm], mt[sr][miss], kd[sr][miss])
            h[sr] = hs
        ok = (h >= 0).astype(xp.int64)
        c[z, _C["alloc_background"]] += ok
        c[z, _C["alloc_background_fail"]] += 1 - ok

    def _bulk_round(self, kinds: Array, start: Array, lists: Array | None = None) -> Array:
        """Apply events start[z] <= j < j0[z] of every zone at once; returns j0 (A: all done).

        ``lists`` (tick-model.md 7.5, kernels.contig.bulk_targets): the free list each event
        takes from, given by the caller for migration targets (no kswapd wake-up, no
        background counter); None: the list of the event's kind (background allocations;
        with CMA, MOVABLE events take MOVABLE or CMA, 7.6).

        Exact for the events it applies: while NR_FREE > wmark_min (fast path, or the slow
        path's get_page(wmark_min) after a kswapd wake-up that changes no allocation state)
        and the lists of the event's migratetype hold a page, an order-0 allocation is
        __rmqueue_smallest, and the order-0 allocations of one migratetype take, in event
        order, the pages of its heads sorted by (order ascending, key descending): the
        order-0 heads first, then each larger block page by page from its lowest pfn
        (expand() puts the upper halves back with the newest keys, so the next allocations
        take them before anything else, and once the block is used up the lower orders are
        empty again). Lists of different types never interact; they share the clock only:
        taking page i > 0 of a block splits an order-ctz(i) head (clock += ctz(i)), page 0
        of an order-o block splits it (clock += o). A block left partly used keeps the
        heads of its free rest, each with the key its split gave it. Heads come from the
        head log (_log_compact), so no pageblock window is read.
        CuPy: all steps are array ops; the callers' loop syncs once per round.
        """
        xp, n = self.xp, self.N
        z_n, a_n = kinds.shape
        i64 = xp.int64
        mt = self.kind_mt[kinds] if lists is None else lists  # 7.5: caller's lists
        if self.has_cma and lists is None:  # 7.6: each MOVABLE event's list, MOVABLE or CMA
            mt = contig.background_lists(self, mt, start)
        jj = self.ar[None, :a_n] if a_n <= CH else xp.arange(a_n, dtype=i64)[None, :]
        ev = jj >= start[:, None]
        cum = xp.cumsum((mt[:, :, None] == self.ar[None, None, :NMT]) & ev[:, :, None], axis=1)
        rank = xp.take_along_axis(cum, mt[:, :, None], axis=2)[:, :, 0] - 1
        # Only the heads of the lowest orders of each list can serve this round: list
        # (z, m) takes at most demand[z, m] pages, from its orders in ascending order, so
        # the orders above the first one whose cumulative pages reach the demand are not
        # reached (none at all for a list without events). Sorting these candidates alone
        # gives the same pages, ranks and totals (tot >= demand, or all heads) as sorting
        # the whole log; the other heads stay in the log as they are.
        demand = cum[:, -1, :]  # (Z, NMT) events per list
        reach = xp.cumsum(self.nrf << self.ar11[None, :, None], axis=1) >= demand[:, None, :]
        ostar = xp.where(reach.any(axis=1), xp.argmax(reach, axis=1), NORD - 1)
        ostar = xp.where(demand > 0, ostar, -1)
        take = (self.ar11[None, :, None] <= ostar[:, None, :]).reshape(-1)  # z * NG + group
        fi_all, key_all = self._log_compact()
        g_all = self.gcf[fi_all]  # order * NMT + list of each head
        cand = take[(fi_all // n) * NG + g_all]
        ci = xp.nonzero(cand)[0]
        rest = (fi_all[~cand], key_all[~cand])
        fi, key, g = fi_all[ci], key_all[ci], g_all[ci].astype(i64)
        ez = fi // n
        ep = fi - ez * n
        eo = g // NMT
        em = g - eo * NMT
        if self.any_sorted:  # regions (seed 002): sorted lists take the lowest region first
            reg = xp.where(self.reg_sorted[ez], (ep >> 9) // self.reg_blocks[ez], 0)
            nreg = int(reg.max()) + 1 if reg.shape[0] else 1
            order = _sort_by_group_then_key_desc(
                xp, ez * NMT + em, eo * nreg + reg, NORD * nreg, key, self.clock
            )
        else:
            order = _sort_by_group_then_key_desc(xp, ez * NMT + em, eo, NORD, key, self.clock)
        fi, key, ez, ep, eo, em = (a[order] for a in (fi, key, ez, ep, eo, em))
        size = xp.int64(1) << eo
        gcum = xp.cumsum(size)
        gx = gcum - size
        sid = ez * NMT + em
        tot = xp.zeros(z_n * NMT, dtype=i64)
        _scatter_add(xp, tot, sid, size)
        segbase = xp.cumsum(tot) - tot  # the log is sorted by segment (zone, type)
        nr_j = self.nr_free[:, None] - (jj - start[:, None])
        ok = (rank < xp.take_along_axis(tot.reshape(z_n, NMT), mt, axis=1)) & (
            nr_j > self.wmin[:, None]
        )
        if self.any_evac:  # regions (seed 002): an event that notes a region runs alone
            first = jj == start[:, None]
            ok &= ~regions.bulk_notes(self, mt, rank, first, (ez, ep, em, gcum, gx, segbase, tot))
        nr_w = nr_j
        if self.has_cma and lists is None:  # tick-model.md 7.6: watermark without ALLOC_CMA
            ok, nr_w = contig.bulk_round_cma(self, mt, nr_j, ok)
        bad = ev & ~ok
        j0 = xp.where(bad.any(axis=1), xp.argmax(bad, axis=1), a_n)
        valid = ev & (jj < j0[:, None])
        wake = xp.nonzero((valid & (nr_w <= self.wlow[:, None])).any(axis=1))[0]
        vz, vj = xp.nonzero(valid)
        if vz.shape[0]:
            log = (fi, key, ez, ep, eo, em, gcum, gx, segbase)
            self._bulk_apply(kinds, mt, rank, vz, vj, log, rest)
        if lists is not None:  # 7.5: migration targets wake no kswapd, count no background
            self.cnt[:, _C["alloc_background"]] -= xp.bincount(vz, minlength=z_n).astype(i64)
        elif wake.shape[0]:  # the slow path's wakeup_kswapd(0): only the first one acts
            self._wakeup_kswapd(wake, xp.zeros(wake.shape[0], dtype=i64), True)
        return j0

    def _bulk_apply(
        self, kinds: Array, mt: Array, rank: Array, vz: Array, vj: Array, log, rest
    ) -> None:
        """The state after the events (vz, vj) of _bulk_round (sorted by zone, event);
        ``log`` the round's sorted candidate heads, ``rest`` the other heads (fi, key)."""
        xp, n = self.xp, self.N
        z_n, a_n = kinds.shape
        i64 = xp.int64
        fi, key, ez, ep, eo, em, gcum, gx, segbase = log
        vm = mt[vz, vj]
        vk = kinds[vz, vj]
        gp = segbase[vz * NMT + vm] + rank[vz, vj]  # global page index in the sorted log
        e = xp.searchsorted(gcum, gp, side="right")
        i = gp - gx[e]
        page = ep[e] + i
        s = xp.where(i == 0, eo[e], self.ctz[i])  # clock values the allocation consumes
        smat = xp.zeros((z_n, a_n), dtype=i64)
        smat[vz, vj] = s
        scum = xp.cumsum(smat, axis=1)
        cb = (self.clock[:, None] + scum - smat)[vz, vj]  # clock before each event
        # pages: kinds and per-block counts
        self.kf[vz * n + page] = vk.astype(xp.uint8)
        brow = vz * self.B + (page >> 9)
        _scatter_add(xp, self.nfree_b.reshape(-1), brow, -1)
        _scatter_add(xp, self.nfile_b.reshape(-1), brow[vk == FILE], 1)
        nv = xp.bincount(vz, minlength=z_n).astype(i64)
        self.nr_free -= nv
        self.cnt[:, _C["alloc_background"]] += nv
        self.clock += scum[:, -1]
        # every head an event took a page of leaves its list
        cnt = xp.bincount(e, minlength=fi.shape[0])
        touched = cnt > 0
        te = xp.nonzero(touched)[0]
        tfi = fi[te]
        tg = eo[te] * NMT + em[te]
        self.bof[tfi] = -1
        self.gcf[tfi] = -1
        _scatter_add(xp, self.nrff, ez[te] * NG + tg, -1)
        keep = ~touched
        self.log_fi = xp.concatenate([rest[0], fi[keep]])
        self.log_key = xp.concatenate([rest[1], key[keep]])
        # per-block maxima of the groups that lost a head, from the remaining heads
        cid_all = (ez * NG + eo * NMT + em) * self.BP + (ep >> 9)
        aff = cid_all[te]  # (duplicates are harmless below: every write is the same value)
        self.bmaxf[aff] = NONE_KEY
        self._cell_mark[aff] = True  # isin(cid_all, aff) as one gather from a dense mask
        sel = keep & self._cell_mark[cid_all]
        self._cell_mark[aff] = False
        _scatter_max(xp, self.bmaxf, cid_all[sel], key[sel])
        srow = (aff // self.BP) * self.S + ((aff % self.BP) >> 6)
        self.sbmaxf[srow] = self.bmax_rows[srow].max(axis=1)
        # a block left partly used: the heads of its free rest, keys from their splits
        pe = xp.nonzero(touched & (cnt < (xp.int64(1) << eo)))[0]
        if pe.shape[0] == 0:
            return
        c = cnt[pe]
        rem = (xp.int64(1) << eo[pe]) - c
        kk = self.ar11[None, :10]
        pr, k = xp.nonzero(((rem[:, None] >> kk) & 1) > 0)
        q = c[pr] + (rem[pr] & ((xp.int64(1) << k) - 1))
        gsplit = gx[pe[pr]] + q - (xp.int64(1) << k)  # the page whose split made the head
        go = xp.argsort(gp)
        ev_i = go[xp.searchsorted(gp[go], gsplit)]
        ent = pe[pr]
        self._add_heads(ez[ent], ep[ent] + q, k, em[ent], cb[ev_i] + s[ev_i] - k)

    def _attempt(self, ph: Any) -> Array:
        """Step 4: one high-order attempt per zone; returns the HELD head or -1."""
        xp = self.xp
        allz = xp.arange(self.Z, dtype=xp.int64)
        o = self.aorder
        mt = xp.full(self.Z, ph.attempt_mt, dtype=xp.int64)
        held = xp.full(self.Z, HELD, dtype=xp.int64)
        gfp = ph.attempt_gfp
        c = self.cnt
        c[:, _C["alloc_attempts"]] += 1
        h = xp.full(self.Z, -1, dtype=xp.int64)
        fast = self._wmark_ok(allz, o, self.wlow, mt == MT_M)
        fz = xp.nonzero(fast)[0]
        if fz.shape[0]:
            h[fz] = self._alloc(fz, o[fz], mt[fz], held[fz])
        sz = xp.nonzero(~fast)[0]
        if sz.shape[0]:
            self.demand[sz, o[sz]] += 1
            self._wakeup_kswapd(sz, o[sz], gfp != GFP_NOWAIT)
            h[sz] = self._get_page(sz, o[sz], self.wmin[sz], mt[sz], held[sz])

            def miss(rows: Array) -> Array:
                return rows[h[rows] < 0]

            def reclaim_retry(rows: Array) -> None:
                if rows.shape[0]:
                    c[rows, _C["direct_reclaimed"]] += self._reclaim(rows, 32)
                    h[rows] = self._get_page(rows, o[rows], self.wmin[rows], mt[rows], held[rows])

            def compact(rows: Array, prio: int) -> Array:
                hh, st = self._direct_compact(rows, o[rows], prio, mt[rows])
                h[rows] = hh
                return st

            if gfp == GFP_MOVABLE:
                r = miss(sz)
                if r.shape[0]:
                    compact(r, ASYNC)
                    reclaim_retry(miss(r))
                    r3 = miss(r)
                    if r3.shape[0]:
                        compact(r3, SYNC_LIGHT)
            elif gfp == GFP_THP:
                r = miss(sz)
                if r.shape[0]:
                    st = compact(r, ASYNC)
                    bad = st == DEFERRED
                    if self.v6:
                        bad |= st == SKIPPED
                    r2 = r[(h[r] < 0) & ~bad]
                    reclaim_retry(r2)
                    r3 = miss(r2)
                    if r3.shape[0]:
                        compact(r3, ASYNC)
        ok = h >= 0
        c[:, _C["alloc_success"]] += ok
        return h

    def _check(self, t: int) -> None:
        """The spec's invariants and the engine's summaries (AssertionError names zone)."""
        kind = to_numpy(self.kind)
        bo = to_numpy(self.bo)
        lm = to_numpy(self.lm)
        key = to_numpy(self.key)
        bmt = to_numpy(self.bmt)
        for z in range(self.Z):

            def fail(what: str, z: int = z) -> None:
                raise AssertionError(f"tick {t}: zone {z}: invariant violated: {what}")

            if (kind[z] > HELD).any():
                fail("no ISOFREE outside a run (kinds partition N)")
            free = (kind[z] == FREE).reshape(self.NC, CH)
            heads = _heads_from_levels(np, _levels_and(np, free))
            exp = np.full(self.N, -1, dtype=np.int8)
            for k, hk in enumerate(heads):
                rr, jj = np.nonzero(hk)
                exp[rr * CH + (jj << k)] = k
            if not np.array_equal(exp, bo[z]):
                fail("free blocks are the maximal aligned runs of FREE pages")
            nrf = int((kind[z] == FREE).sum())
            hp = np.nonzero(bo[z] >= 0)[0]
            if int((1 << bo[z][hp].astype(np.int64)).sum()) != nrf:
                fail("sum 2^o over heads == NR_FREE")
            if int(to_numpy(self.nr_free)[z]) != nrf:
                fail("engine NR_FREE summary")
            if self.v6 and not np.array_equal(lm[z][hp], bmt[z][hp >> 9]):
                fail("v6_19: list_mt == block_mt at every head")
            cnt = to_numpy(self.cnt)[z]
            if cnt[_C["compact_stall"]] != cnt[_C["compact_success"]] + cnt[_C["compact_fail"]]:
                fail("compact_stall == compact_success + compact_fail")
            for a, b in (
                ("compact_daemon_migrate_scanned", "compact_migrate_scanned"),
                ("compact_daemon_free_scanned", "compact_free_scanned"),
            ):
                if cnt[_C[a]] > cnt[_C[b]]:
                    fail(f"{a} <= {b}")
            gc = np.where(bo[z] >= 0, bo[z] * NMT + lm[z], -1)
            if not np.array_equal(gc, to_numpy(self.gc)[z]):
                fail("engine (order, list) group codes")
            if len(np.unique(key[z][hp])) != len(hp):
                fail("keys unique in a zone")
            nr = np.zeros((NORD, NMT), dtype=np.int64)
            np.add.at(nr, (bo[z][hp], lm[z][hp]), 1)
            if not np.array_equal(nr, to_numpy(self.nrf)[z]):
                fail("engine nr_free[o][mt] summary")
            bm = np.full((NG, self.BP), NONE_KEY, dtype=np.int64)
            np.maximum.at(bm, (bo[z][hp] * NMT + lm[z][hp], hp >> 9), key[z][hp])
            if not np.array_equal(bm, to_numpy(self.bmax)[z]):
                fail("engine per-block max-key summary")
            sbm = bm.reshape(NG, self.S, SB).max(axis=2)
            if not np.array_equal(sbm, to_numpy(self.sbmax)[z]):
                fail("engine superblock max-key summary")
            k3 = kind[z].reshape(self.B, P)
            if not np.array_equal((k3 == FREE).sum(1), to_numpy(self.nfree_b)[z]):
                fail("engine per-block FREE counts")
            if not np.array_equal((k3 == FILE).sum(1), to_numpy(self.nfile_b)[z]):
                fail("engine per-block FILE counts")
            if to_numpy(self.niso_b)[z].any():
                fail("engine per-block ISOFREE counts")
            if bool(to_numpy(self.mpc_inprog)[z]) and int(to_numpy(self.mpc_region)[z]) < 0:
                fail("regions: work queued without a region")  # regions (seed 002)
        lf = to_numpy(self._log_compact()[0])
        heads = np.flatnonzero(bo.reshape(-1) >= 0)
        if not np.array_equal(np.sort(lf), heads):
            z = int((np.setxor1d(lf, heads)[0]) // self.N)
            raise AssertionError(f"tick {t}: zone {z}: invariant violated: engine head log")

    def run(self, check: bool, progress: Callable[[int, int], None] | None = None) -> TickResult:
        xp, prog = self.xp, self.prog
        z_n = self.Z
        n_att = prog.n_attempts
        n_samp = prog.n_samples
        counters = np.zeros((z_n, len(prog.phases), len(COUNTERS)), dtype=np.int64)
        buddyinfo = xp.zeros((z_n, n_samp, NORD), dtype=xp.int64)
        nr_free_s = xp.zeros((z_n, n_samp), dtype=xp.int64)
        free_regions = xp.zeros((z_n, n_samp), dtype=xp.int64)  # regions (seed 002)
        attempts = xp.zeros((z_n, n_att), dtype=xp.int8)
        trials = np.zeros((z_n, prog.n_trials, len(TRIAL_FIELDS)), dtype=np.int64)  # 7.4
        tr_i = 0
        seeds = self.seed[:, None]
        allz = xp.arange(z_n, dtype=xp.int64)
        t = 0
        a_i = 0
        for pi, ph in enumerate(prog.phases):
            held_h = xp.zeros((z_n, max(ph.n_attempts, 1)), dtype=xp.int64)
            held_n = xp.zeros(z_n, dtype=xp.int64)
            thr = xp.asarray(np.array(weight_thresholds(ph.alloc_weights), dtype=np.uint64))
            bg = xp.asarray(np.array(BACKGROUND_KINDS, dtype=np.int64))
            free_table = np.zeros(256, dtype=bool)  # kind -> may a probe free it
            free_table[list(ph.free_kinds)] = True
            free_table = xp.asarray(free_table)
            for ti in range(ph.ticks):
                if ti == 0:
                    if ph.kill_anon or ph.drop_caches:
                        mask = xp.zeros((z_n, self.N), dtype=bool)
                        if ph.kill_anon:
                            mask |= self.kind == ANON
                        if ph.drop_caches:
                            mask |= (self.kind == FILE) | (self.kind == RECL)
                        self._free_mask(mask)
                    if ph.min_free_kbytes:
                        self._set_wmarks(np.full(z_n, ph.min_free_kbytes, dtype=np.int64))
                f_n = ph.frees_per_tick
                if f_n:
                    ctr = xp.arange(t * f_n, (t + 1) * f_n, dtype=xp.uint64)[None, :]
                    p = (hash_u64(xp, seeds, 0, STREAM_FREE, ctr) % xp.uint64(self.N)).astype(
                        xp.int64
                    )
                    zz = xp.broadcast_to(allz[:, None], p.shape)
                    ok = free_table[self.kind[zz, p]]
                    g = xp.unique(zz[ok] * self.N + p[ok])
                    self._free_pfns(g // self.N, g % self.N)
                if self.any_evac:  # regions (seed 002): a delayed worker runs after the frees
                    regions.mem_power_work(self, delayed=True)
                a_n = ph.allocs_per_tick
                if a_n:
                    ctr = xp.arange(t * a_n, (t + 1) * a_n, dtype=xp.uint64)[None, :]
                    r = hash_u64(xp, seeds, 0, STREAM_ALLOC, ctr) >> xp.uint64(32)
                    kidx = (r[:, :, None] >= thr[None, None, :]).sum(axis=2)
                    self._background(bg[kidx])
                pe = ph.attempt_every
                if pe > 0 and ti % pe == pe - 1:
                    h = self._attempt(ph)
                    ok = h >= 0
                    attempts[:, a_i] = ok.astype(xp.int8)
                    a_i += 1
                    okz = xp.nonzero(ok)[0]
                    if ph.keep:
                        held_h[okz, held_n[okz]] = h[okz]
                        held_n[okz] += 1
                    else:
                        self._free_units(okz, h[okz], self.aorder[okz])
                ce = ph.contig_every
                if ce > 0 and ti % ce == ce - 1:  # step 4b: a contiguous-allocation trial
                    trials[:, tr_i] = contig.contig_trial(
                        self, ph, tr_i, self.contig_method, self.busy_file
                    )
                    tr_i += 1
                self._kswapd_step()
                if self.v6 and (t + 1) % prog.proactive_period == 0:
                    # kcompactd's 500 ms timeout (6.19): work if an order is pending
                    self.kc_pending |= (self.kmode != KCOMPACTD_NONE) & (self.kc_max_order > 0)
                self._kcompactd()
                self._proactive(t)
                if self.any_evac:  # regions (seed 002): the queued worker runs
                    regions.mem_power_work(self, delayed=False)
                se = prog.sample_every
                if t % se == se - 1 and t // se < n_samp:
                    s = t // se
                    buddyinfo[:, s] = self.nrf.sum(axis=2)
                    nr_free_s[:, s] = self.nr_free
                    free_regions[:, s] = regions.nr_free_regions(self)  # regions (seed 002)
                if ti == ph.ticks - 1:
                    self._phase_end(held_h, held_n)
                if check:
                    self._check(t)
                if self._log_n > 4 * self.log_fi.shape[0] + 65536:
                    self._log_compact()  # bound the head log when nothing allocates
                t += 1
                if progress is not None:
                    progress(t, prog.n_ticks)
            if ph.ticks == 0:
                pass
            counters[:, pi] = to_numpy(self.cnt)
        res = self._result(counters, buddyinfo, nr_free_s, attempts)
        res.free_regions = to_numpy(free_regions)  # regions (seed 002)
        res.trials = trials
        return res

    def _phase_end(self, held_h: Array, held_n: Array) -> None:
        """Held blocks freed in reverse order of allocation (__free_pages, KM 10.1).

        Zone z's block i is its call number s = held_n[z] - 1 - i and takes clock value
        clock[z] + s + 1. Blocks in different 1024-page chunks never interact (every buddy
        of a free lies in its chunk), so round r frees, at once, the r-th block (in call
        order) of every (zone, chunk): equal to the one-block-at-a-time sequence.
        """
        xp = self.xp
        top = int(held_n.max()) if held_n.shape[0] else 0
        if top == 0:
            return
        z, i = xp.nonzero(xp.arange(top, dtype=xp.int64)[None, :] < held_n[:, None])
        h = held_h[z, i]
        s = held_n[z] - 1 - i
        cid = z * self.NC + (h >> 10)
        srt = xp.lexsort(xp.stack([s, cid]))  # by (zone, chunk), then call order
        z, h, s, cid = z[srt], h[srt], s[srt], cid[srt]
        rnd = xp.arange(cid.shape[0]) - xp.searchsorted(cid, cid, side="left")
        before = self.clock[z] + s
        order = self.aorder[z]
        for r in range(int(rnd.max()) + 1):
            sel = xp.nonzero(rnd == r)[0]
            self._free_units(z[sel], h[sel], order[sel], key_base=before[sel])

    def _result(self, counters: np.ndarray, bi: Array, nrs: Array, att: Array) -> TickResult:
        # in place (the engine ends here): no new (Z, N) arrays, which cost page faults
        tails = self.bo < 0
        self.xp.copyto(self.lm, -1, where=tails)
        self.xp.copyto(self.key, 0, where=tails)
        lm, key = self.lm, self.key
        scal = {
            "clock": self.clock,
            "cached_migrate": self.cached_migrate,
            "cached_free": self.cached_free,
            "compact_considered": self.considered,
            "compact_defer_shift": self.defer_shift,
            "compact_order_failed": self.order_failed,
            "compact_blockskip_flush": self.flush,
            "kswapd_awake": self.kswapd_awake,
            "kswapd_order": self.kswapd_order,
            "kswapd_failures": self.kswapd_failures,
            "kcompactd_max_order": self.kc_max_order,
            "reclaim_cursor": self.cursor,
            "wmark_min": self.wmin,
            "wmark_low": self.wlow,
            "wmark_high": self.whigh,
            "mpc_region": self.mpc_region,  # regions (seed 002)
        }
        assert tuple(scal) == SCALARS
        return TickResult(
            kind=to_numpy(self.kind),
            block_mt=to_numpy(self.bmt),
            skip=to_numpy(self.skip),
            buddy_order=to_numpy(self.bo),
            list_mt=to_numpy(lm),
            key=to_numpy(key),
            counters=counters,
            buddyinfo=to_numpy(bi),
            nr_free=to_numpy(nrs),
            attempts=to_numpy(att),
            scalars={k: to_numpy(v).astype(np.int64) for k, v in scal.items()},
        )
