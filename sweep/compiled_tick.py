"""Compiled sequential CPU baseline of the time-stepped model (Numba), exact like the reference.

The "careful C programmer's" simulator of ``docs/tick-model.md`` ("TM x", sections 1-5):
the per-zone reference ``tests/reference/tick.py`` (``run_program_ref``) ported to
``@numba.njit`` functions over flat NumPy arrays, in the reference's control flow and with
its function names, which are those of mm/page_alloc.c (``__free_one_page()``,
``expand()``, ``__rmqueue_smallest()``, ``__rmqueue_claim()``, ``__rmqueue_steal()``,
``__rmqueue_fallback()``, ``__zone_watermark_ok()``), mm/compaction.c
(``compact_zone()``, ``compact_finished()``, ``isolate_migratepages()``,
``isolate_freepages()``, ``compaction_deferred()``, ``kcompactd_do_work()``, proactive
compaction) and mm/vmscan.c (``wakeup_kswapd()``, ``balance_pgdat()``,
``kswapd_try_to_sleep()``). It gives the same :class:`~kernels.program.TickResult` as the
reference and as the batched NumPy engine ``kernels.tick.run_program``, every field.

State of one zone, flat arrays as a C programmer would keep them:

* per page: ``kind`` (uint8, the TM 1 codes), ``buddy_order`` (int8, -1 off the free
  lists), ``list_mt`` (int8) and ``key`` (int64) at free heads (TM 2), and the
  ``next`` / ``prev`` links (int32) of the doubly linked free lists;
* per pageblock: ``block_mt`` (int8) and ``skip`` (uint8);
* per (order, migratetype): list head, tail and length (``free_area[o].free_list[mt]``
  and ``nr_free``);
* the zone scalars (``SCALARS`` of kernels/program.py first, then NR_FREE_PAGES, the
  kswapd / kcompactd state and the ``struct compact_control`` of the current run) in one
  int64 array, the ``COUNTERS`` in another, and ``cc->freepages`` as an array min-heap.

Free lists are real linked lists, as in the kernel: ``list_add`` puts a head first with
key ``+clock`` and ``list_add_tail`` last with key ``-clock`` (``clock`` counting every
insertion, TM 2), so a list is always in descending key order and its first entry is the
head with the largest key: exactly the reference's ``first()`` (a dict plus a lazy max-heap,
KM 11.2), at O(1) per operation. NR_FREE_PAGES is kept as a counter by every kind change
instead of being counted.

Supported (rejected otherwise, before any compute, with a ValueError naming the feature):
TM 1-5 for both kernel profiles (4.12's ``__rmqueue_fallback()`` / ``steal_suitable_fallback()``,
6.19's ``__rmqueue_claim()`` / ``__rmqueue_steal()``): background frees and allocations,
high-order attempts of every GFP class (nowait, movable with async then sync-light direct
compaction, thp), deferred compaction, skip bits and cached scanner positions, kswapd,
kcompactd in every mode (none, reactive, proactive_demand, proactive_score), skip_pinned,
stop_below_watermark, phase starts (kill_anon, drop_caches, min_free_kbytes) and the
samples (buddyinfo, NR_FREE, and the free-region count of TM 6.5 for any
``region_blocks``). Not supported: the other memory-region options of TM 6
(``sorted_freelists``, ``region_evacuation``, ``region_worker_delayed``) and everything
of TM 7 (MIGRATE_CMA pageblocks, ``contig_method`` / ``busy_file``, contiguous-allocation
trials).

Like sweep/compiled.py, the compiled code runs without Numba's reference-counted runtime
(``_nrt=False``): the caller allocates every buffer, and passing the zone's arrays (one
tuple) between helpers costs no atomic reference counting. With NRT the same code ran the
benchmark's stress pass (1000 zones of 16 MiB, 20 ticks, one thread) at about 9 k
zone-ticks/s instead of 70-80 k. Compiling from a cold cache takes about 20-25 s on a
2-core VM; later processes load the cached machine code in well under a second.

Threading: ``parallel=True`` runs the zones in a ``numba.prange`` loop, one zone per
iteration, with ``numba.get_num_threads()`` threads; ``parallel=False`` runs the same
per-zone kernel in a plain loop on the calling thread, for a per-core figure. Compiled
code is cached on disk (``cache=True``).

Two targets, one source: imported normally, the helpers are ``numba.njit`` functions and
the CPU entry points are ``_run_zones_parallel`` / ``_run_zones_serial``. sweep/cuda_tick.py
executes this file again with ``_TARGET = "cuda"``: the helpers become CUDA device
functions, and the GPU entry points ``_init_zones_kernel`` / ``_run_ticks_kernel`` run one
zone per thread (init_zone(), then run_ticks() chunk by chunk). The helpers therefore use
only what both targets compile (no allocation, no min()/max() builtins: imin()/imax()).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numba
import numpy as np

from kernels.program import (
    ANON,
    BACKGROUND_KINDS,
    CONTIG_NONE,
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
    MT_CMA,
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
from kernels.rng import _MIX1 as MIX1
from kernels.rng import _MIX2 as MIX2
from kernels.rng import _SEED_SALT as SEED_SALT
from kernels.rng import _STREAM_SALT as STREAM_SALT
from kernels.rng import _ZONE_SALT as ZONE_SALT
from kernels.rng import GOLDEN_GAMMA
from kernels.zone import COMPACT_CLUSTER_MAX as SWAP_CLUSTER_MAX
from kernels.zone import (
    MAX_PAGE_ORDER,
    PAGEBLOCK_NR_PAGES,
    PAGEBLOCK_ORDER,
    KernelProfile,
    setup_per_zone_wmarks,
)

NR_ORDERS = MAX_PAGE_ORDER + 1
MAX_RECLAIM_RETRIES = 16
COMPACT_MAX_DEFER_SHIFT = 6
U, M, R = 0, 1, 2  # MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE
NR_MT = 3  # no CMA lists: MIGRATE_CMA is rejected
MIGRATE_ASYNC, MIGRATE_SYNC_LIGHT = 0, 1
# Pool of cc->freepages: isolation stops once the pool holds ``need`` <= 512 pages, and
# one isolation adds at most 1024, so it never holds more than 511 + 1024.
POOL_CAPACITY = 2048
SCRATCH_MIN = 512  # process_source_block()'s candidates; reclaim's 32 taken pages

# enum compact_result (TM 3.3), only compared for equality.
COMPACT_SKIPPED = 0
COMPACT_DEFERRED = 1
COMPACT_CONTINUE = 2
COMPACT_PARTIAL_SKIPPED = 3
COMPACT_COMPLETE = 4
COMPACT_SUCCESS = 5
COMPACT_CONTENDED = 6

# Zone scalars (int64 array ``sc``): SCALARS in order, then the internal state.
(
    S_CLOCK,
    S_CACHED_MIGRATE,
    S_CACHED_FREE,
    S_CONSIDERED,
    S_DEFER_SHIFT,
    S_ORDER_FAILED,
    S_BLOCKSKIP_FLUSH,
    S_KSWAPD_AWAKE,
    S_KSWAPD_ORDER,
    S_KSWAPD_FAILURES,
    S_KCD_MAX_ORDER,
    S_RECLAIM_CURSOR,
    S_WMIN,
    S_WLOW,
    S_WHIGH,
    S_MPC_REGION,
) = range(16)
assert len(SCALARS) == 16 and SCALARS[S_WHIGH] == "wmark_high"
S_NR_FREE = 16  # NR_FREE_PAGES (kind FREE; ISOFREE is not counted)
S_KCD_PENDING = 17
S_PROACTIVE_NEXT = 18
S_KSWAPD_RECLAIMED = 19
S_POOL = 20  # cc->freepages: pool size
S_NR_ATTEMPTS = 21  # attempt log entries written
S_NR_SAMPLES = 22  # samples written
# struct compact_control of the current run (TM 3.3; compaction runs never nest).
C_ORDER = 23
C_MODE = 24
C_MT = 25
C_DIRECT = 26
C_WHOLE_ZONE = 27
C_IGNORE_SKIP = 28
C_PROACTIVE = 29
C_DEMAND = 30
C_M = 31  # migrate scanner block (cc->migrate_pfn >> 9)
C_F = 32  # free scanner block
C_ISO = 33  # free scanner's next PFN (isolate_start_pfn)
C_ISOLATED_IN_F = 34
C_MIGRATE_SCANNED = 35  # cc->total_migrate_scanned
C_FREE_SCANNED = 36  # cc->total_free_scanned
NR_SC = 37

# Zone parameters (int64 array ``zp``), fixed for a run.
(
    P_N,
    P_B,
    P_V6,
    P_ATTEMPT_ORDER,
    P_KCOMPACTD,
    P_SKIP_PINNED,
    P_STOP_BELOW_WMARK,
    P_PROACTIVENESS,
    P_REGION_PAGES,
    P_NR_REGIONS,
    P_KSWAPD_ROUNDS,
    P_PROACTIVE_PERIOD,
    P_SAMPLE_EVERY,
) = range(13)
NR_ZP = 13

# Phase table (int64 array ``ph``, one row per phase).
(
    H_TICKS,
    H_FREES,
    H_ALLOCS,
    H_THR0,
    H_THR1,
    H_THR2,
    H_THR3,
    H_FREE_KINDS,  # bit mask over kinds
    H_ATTEMPT_EVERY,
    H_GFP,
    H_ATTEMPT_MT,
    H_KEEP,
    H_KILL_ANON,
    H_DROP_CACHES,
    H_MIN_FREE_KBYTES,
) = range(15)
NR_PH = 15

# Counters, as kernels/program.py COUNTERS.
C = COUNTER_INDEX
N_COMPACT_STALL = C["compact_stall"]
N_COMPACT_SUCCESS = C["compact_success"]
N_COMPACT_FAIL = C["compact_fail"]
N_COMPACT_MIGRATE_SCANNED = C["compact_migrate_scanned"]
N_COMPACT_FREE_SCANNED = C["compact_free_scanned"]
N_COMPACT_ISOLATED = C["compact_isolated"]
N_PGMIGRATE_SUCCESS = C["pgmigrate_success"]
N_PGMIGRATE_FAIL = C["pgmigrate_fail"]
N_DAEMON_WAKE = C["compact_daemon_wake"]
N_DAEMON_MIGRATE_SCANNED = C["compact_daemon_migrate_scanned"]
N_DAEMON_FREE_SCANNED = C["compact_daemon_free_scanned"]
N_LRU_LOCK = C["lru_lock_acquisitions"]
N_ALLOC_ATTEMPTS = C["alloc_attempts"]
N_ALLOC_SUCCESS = C["alloc_success"]
N_ALLOC_BACKGROUND = C["alloc_background"]
N_ALLOC_BACKGROUND_FAIL = C["alloc_background_fail"]
N_KSWAPD_WAKE = C["kswapd_wake"]
N_PGSTEAL_KSWAPD = C["pgsteal_kswapd"]
N_DIRECT_RECLAIMED = C["direct_reclaimed"]
NR_COUNTERS = len(COUNTERS)
del C

assert BACKGROUND_KINDS == (ANON, FILE, UNMOV, RECL)
assert [KIND_MIGRATETYPE[k] for k in BACKGROUND_KINDS] == [M, M, U, R]

# kernels/rng.py's splitmix64 constants are imported above (the same values by name).
U64_30, U64_27, U64_31, U64_32, U64_1 = (np.uint64(x) for x in (30, 27, 31, 32, 1))

# The target this copy of the module compiles its helpers for. Imported normally it is
# "cpu"; sweep/cuda_tick.py executes the same source again with ``_TARGET = "cuda"``
# preset, which makes every helper below a CUDA device function (one thread per zone).
_TARGET = globals().get("_TARGET", "cpu")
if _TARGET == "cpu":
    _njit = numba.njit(cache=True, nogil=True, _nrt=False)
    _inline = numba.njit(cache=True, nogil=True, _nrt=False, inline="always")
else:
    from numba import cuda

    _njit = cuda.jit(device=True)
    _inline = cuda.jit(device=True)


def _widen(t: Any) -> Any:
    """The argument type a helper is compiled for: not Literal, small integers as int64."""
    t = numba.types.unliteral(t)
    if isinstance(t, numba.types.Integer) and t.bitwidth < 64:
        return numba.types.int64
    return t


def _jit(func: Any) -> Any:
    """``_njit``, compiled once per non-literal signature.

    A compiled caller passing a constant (``order=0``, ``tail=True``) would otherwise get
    a separate specialisation of the callee (and of everything below it) for each
    ``Literal`` argument type, which tripled the compile time; the helpers gain nothing
    from literal arguments, so calls from compiled code are typed with
    ``numba.types.unliteral`` arguments, integers narrower than 64 bits (array elements
    such as a page's int8 buddy order) widened to int64.
    """
    dispatcher = _njit(func)
    if _TARGET != "cpu":
        return dispatcher
    get_call_template = dispatcher.get_call_template

    def unliteral_call_template(args: Any, kws: Any) -> Any:
        args = tuple(_widen(a) for a in args)
        kws = {k: _widen(v) for k, v in kws.items()}
        return get_call_template(args, kws)

    dispatcher.get_call_template = unliteral_call_template
    return dispatcher


# The zone tuple ``zs`` holds, in this order:
#   kind, buddy_order, list_mt, key, nxt, prv,  (per page)
#   block_mt, skip,                              (per pageblock)
#   lh, lt, lc,                                  (per order * NR_MT + mt: head, tail, length)
#   sc, cnt, demand, pool, zp                    (scalars, counters, demand[], freepages, params)


# ---------------------------------------------------------------------------------------
# Hashing (kernels/rng.py hash_u64; TM 4 "Random numbers")
# ---------------------------------------------------------------------------------------


@_inline
def mix64(x: Any) -> Any:
    """splitmix64's output function (kernels.rng.mix64), on one uint64."""
    x = (x ^ (x >> U64_30)) * MIX1
    x = (x ^ (x >> U64_27)) * MIX2
    return x ^ (x >> U64_31)


@_jit
def sequence_base(seed: Any, zone: Any, stream: Any) -> Any:
    """kernels.rng._sequence_base(): the start of the (seed, zone, stream) sequence."""
    base = mix64(seed ^ SEED_SALT)
    base = mix64(base ^ mix64(zone + ZONE_SALT))
    return mix64(base ^ mix64(stream + STREAM_SALT))


@_inline
def hash_at(base: Any, counter: int) -> Any:
    """kernels.rng.hash_u64(seed, zone, stream, counter) from the sequence's base."""
    return mix64(base + (np.uint64(counter) + U64_1) * GOLDEN_GAMMA)


@_jit
def hash_u64_many(seed: Any, zone: Any, stream: Any, counters: Any, out: Any) -> None:
    """out[i] = kernels.rng.hash_u64(seed, zone, stream, counters[i]) (for the tests)."""
    base = sequence_base(seed, zone, stream)
    for i in range(counters.shape[0]):
        out[i] = hash_at(base, counters[i])


# ---------------------------------------------------------------------------------------
# Small utilities
# ---------------------------------------------------------------------------------------


@_inline
def imin(a: int, b: int) -> int:
    """min() of two integers (Numba's CUDA target has no min/max of two ints)."""
    return a if a <= b else b


@_inline
def imax(a: int, b: int) -> int:
    """max() of two integers."""
    return a if a >= b else b


@_jit
def sort_ascending(a: Any, n: int) -> None:
    """Sort a[:n] in place (heapsort: no allocation)."""
    for start in range(n // 2 - 1, -1, -1):
        _sift_down(a, start, n)
    for end in range(n - 1, 0, -1):
        a[0], a[end] = a[end], a[0]
        _sift_down(a, 0, end)


@_inline
def _sift_down(a: Any, i: int, n: int) -> None:
    while True:
        c = 2 * i + 1
        if c >= n:
            return
        if c + 1 < n and a[c + 1] > a[c]:
            c += 1
        if a[i] >= a[c]:
            return
        a[i], a[c] = a[c], a[i]
        i = c


@_inline
def pool_push(pool: Any, sc: Any, pfn: int) -> None:
    """heapq.heappush(cc->freepages, pfn): a binary min-heap of PFNs."""
    i = sc[S_POOL]
    sc[S_POOL] = i + 1
    while i > 0:
        parent = (i - 1) >> 1
        if pool[parent] <= pfn:
            break
        pool[i] = pool[parent]
        i = parent
    pool[i] = pfn


@_jit
def pool_pop(pool: Any, sc: Any) -> int:
    """heapq.heappop(cc->freepages): the lowest PFN."""
    n = sc[S_POOL] - 1
    sc[S_POOL] = n
    top = pool[0]
    last = pool[n]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and pool[c + 1] < pool[c]:
            c += 1
        if last <= pool[c]:
            break
        pool[i] = pool[c]
        i = c
    if n > 0:
        pool[i] = last
    return top


@_inline
def set_kind(kind: Any, sc: Any, pfn: int, k: int) -> None:
    """kind[pfn] = k, keeping NR_FREE_PAGES (pages of kind FREE, TM 2) up to date."""
    old = kind[pfn]
    if old == FREE:
        sc[S_NR_FREE] -= 1
    if k == FREE:
        sc[S_NR_FREE] += 1
    kind[pfn] = k


@_inline
def nr_free_order(lc: Any, order: int) -> int:
    """free_area[order].nr_free: heads of that order on every list (buddyinfo)."""
    b = order * NR_MT
    return lc[b] + lc[b + 1] + lc[b + 2]


# ---------------------------------------------------------------------------------------
# Free lists (TM 2, KM 2.1, 11.2)
# ---------------------------------------------------------------------------------------


@_jit
def add_to_free_list(zs: Any, pfn: int, order: int, mt: int, tail: bool) -> None:
    """__add_to_free_list(): list_add (key = +(++clock)) or list_add_tail (-(++clock))."""
    kind, bo, lmt, key, nxt, prv, bmt, skip, lh, lt, lc, sc, cnt, dem, pool, zp = zs
    clock = sc[S_CLOCK] + 1
    sc[S_CLOCK] = clock
    bo[pfn] = order
    lmt[pfn] = mt
    i = order * NR_MT + mt
    if tail:
        key[pfn] = -clock
        last = lt[i]
        prv[pfn] = last
        nxt[pfn] = -1
        if last >= 0:
            nxt[last] = pfn
        else:
            lh[i] = pfn
        lt[i] = pfn
    else:
        key[pfn] = clock
        head = lh[i]
        nxt[pfn] = head
        prv[pfn] = -1
        if head >= 0:
            prv[head] = pfn
        else:
            lt[i] = pfn
        lh[i] = pfn
    lc[i] += 1


@_jit
def del_page_from_free_list(zs: Any, pfn: int) -> None:
    """__del_page_from_free_list(): unlink; buddy_order[pfn] = -1 (TM 2.2 del(h))."""
    kind, bo, lmt, key, nxt, prv, bmt, skip, lh, lt, lc, sc, cnt, dem, pool, zp = zs
    i = bo[pfn] * NR_MT + lmt[pfn]
    p = prv[pfn]
    n = nxt[pfn]
    if p >= 0:
        nxt[p] = n
    else:
        lh[i] = n
    if n >= 0:
        prv[n] = p
    else:
        lt[i] = p
    lc[i] -= 1
    bo[pfn] = -1


@_jit
def move_to_free_list(zs: Any, pfn: int, mt: int, tail: bool) -> None:
    """move_to_free_list() (list_move_tail, 6.19) / list_move (head, 4.12)."""
    order = zs[1][pfn]
    del_page_from_free_list(zs, pfn)
    add_to_free_list(zs, pfn, order, mt, tail)


@_inline
def first(zs: Any, order: int, mt: int) -> int:
    """The first entry of free_area[order].free_list[mt] (the largest key), or -1."""
    return zs[8][order * NR_MT + mt]


# ---------------------------------------------------------------------------------------
# Freeing (TM 2.1, KM 2.2)
# ---------------------------------------------------------------------------------------


@_jit
def __free_one_page(zs: Any, pfn: int, order: int) -> None:
    """Mirrors __free_one_page(), mm/page_alloc.c (KM 2.2), as TM 2.1 writes it.

    Merges with free buddies up to order 10 (4.12 across types; 6.19 retypes the buddy's
    pageblock, change_pageblock_range()), then adds the block at the tail when the
    next-order buddy is a free head (buddy_merge_likely), at the head otherwise.
    """
    bo = zs[1]
    bmt = zs[6]
    v6 = zs[15][P_V6] != 0
    mt = bmt[pfn >> PAGEBLOCK_ORDER]  # get_pfnblock_migratetype() at free time
    while order < MAX_PAGE_ORDER:
        buddy_pfn = pfn ^ (1 << order)
        if bo[buddy_pfn] != order:  # not PageBuddy of this order
            break
        del_page_from_free_list(zs, buddy_pfn)
        if v6 and order >= PAGEBLOCK_ORDER and bmt[buddy_pfn >> PAGEBLOCK_ORDER] != mt:
            bmt[buddy_pfn >> PAGEBLOCK_ORDER] = mt  # change_pageblock_range(buddy, 9, mt)
        pfn &= ~(1 << order)
        order += 1
    to_tail = False
    if order < MAX_PAGE_ORDER - 1:
        higher_buddy = (pfn & ~(1 << order)) ^ (2 << order)
        to_tail = bo[higher_buddy] == order + 1
    add_to_free_list(zs, pfn, order, mt, to_tail)


@_jit
def free_pages_ascending(zs: Any, pfns: Any, n: int) -> None:
    """Free order-0 pages pfns[:n] (TM 2.1), sorted first: each FREE then __free_one_page()."""
    kind = zs[0]
    sc = zs[11]
    sort_ascending(pfns, n)
    for i in range(n):
        set_kind(kind, sc, pfns[i], FREE)
        __free_one_page(zs, pfns[i], 0)


@_jit
def __free_pages(zs: Any, pfn: int, order: int) -> None:
    """Free an allocated block of 2**order pages as one unit (a HELD block, TM 2.1)."""
    kind = zs[0]
    sc = zs[11]
    for p in range(pfn, pfn + (1 << order)):
        set_kind(kind, sc, p, FREE)
    __free_one_page(zs, pfn, order)


# ---------------------------------------------------------------------------------------
# Allocation (TM 2.2, KM 2.3, 2.4)
# ---------------------------------------------------------------------------------------


@_jit
def expand(zs: Any, page: int, low: int, high: int, mt: int) -> None:
    """Mirrors expand(), mm/page_alloc.c: the upper halves go to the list heads (KM 2.3)."""
    while high > low:
        high -= 1
        add_to_free_list(zs, page + (1 << high), high, mt, False)


@_jit
def __rmqueue_smallest(zs: Any, order: int, mt: int) -> int:
    """Mirrors __rmqueue_smallest(): the first entry of the smallest non-empty list."""
    for current_order in range(order, NR_ORDERS):
        page = first(zs, current_order, mt)
        if page >= 0:
            del_page_from_free_list(zs, page)
            expand(zs, page, order, current_order, mt)
            return page
    return -1


@_inline
def can_claim(order: int, mt: int) -> bool:
    """should_try_claim_block() (6.19) / can_steal_fallback() (4.12), KM 2.4."""
    return order >= PAGEBLOCK_ORDER // 2 or mt == U or mt == R


@_inline
def fallback_of(mt: int, i: int) -> int:
    """fallbacks[mt][i] (KM 2.4): U -> (R, M), M -> (R, U), R -> (U, M)."""
    if mt == U:
        return R if i == 0 else M
    if mt == M:
        return R if i == 0 else U
    return U if i == 0 else M


@_jit
def find_suitable_fallback(zs: Any, order: int, mt: int) -> int:
    """The first fallback type of mt with a non-empty list at this order, or -1."""
    lc = zs[10]
    for i in range(2):
        fallback_mt = fallback_of(mt, i)
        if lc[order * NR_MT + fallback_mt] > 0:
            return fallback_mt
    return -1


@_inline
def _set_block_types(bmt: Any, page: int, order: int, mt: int) -> None:
    """change_pageblock_range(): retype the 1 (order 9) or 2 (order 10) blocks of page."""
    for block in range(page >> PAGEBLOCK_ORDER, (page + (1 << order)) >> PAGEBLOCK_ORDER):
        bmt[block] = mt


@_inline
def _alike_pages(mt: int, block_type: int, free_pages: int, movable_pages: int) -> int:
    """The "alike" pages of try_to_claim_block() / steal_suitable_fallback() (KM 2.4)."""
    if mt == M:
        return movable_pages
    if block_type == M:
        return PAGEBLOCK_NR_PAGES - free_pages - movable_pages
    return 0


@_jit
def __rmqueue_claim(zs: Any, order: int, mt: int) -> int:
    """Mirrors __rmqueue_claim() + try_to_claim_block(), 6.19 (KM 2.4): largest first."""
    kind, bo, lmt, key, nxt, prv, bmt, skip, lh, lt, lc, sc, cnt, dem, pool, zp = zs
    for current_order in range(MAX_PAGE_ORDER, order - 1, -1):
        if not can_claim(current_order, mt):
            break  # find_suitable_fallback() == -2
        fallback_mt = find_suitable_fallback(zs, current_order, mt)
        if fallback_mt < 0:
            continue
        page = first(zs, current_order, fallback_mt)
        # try_to_claim_block()
        if current_order >= PAGEBLOCK_ORDER:
            del_page_from_free_list(zs, page)
            _set_block_types(bmt, page, current_order, mt)
            expand(zs, page, order, current_order, mt)
            return page
        block = page >> PAGEBLOCK_ORDER
        start = block << PAGEBLOCK_ORDER
        # prep_move_freepages_block(): FREE pages and PageLRU (ANON, FILE, PIN) pages
        free_pages = 0
        movable_pages = 0
        for p in range(start, start + PAGEBLOCK_NR_PAGES):
            k = kind[p]
            if k == FREE:
                free_pages += 1
            elif k == ANON or k == FILE or k == PIN:
                movable_pages += 1
        alike = _alike_pages(mt, fallback_mt, free_pages, movable_pages)
        if free_pages + alike >= PAGEBLOCK_NR_PAGES // 2:
            # __move_freepages_block(): every free head of the block, ascending PFN,
            # move_to_free_list() = list_move_tail.
            for p in range(start, start + PAGEBLOCK_NR_PAGES):
                if bo[p] >= 0:
                    move_to_free_list(zs, p, mt, True)
            bmt[block] = mt
            return __rmqueue_smallest(zs, order, mt)
        # not claimed: try the next smaller order
    return -1


@_jit
def __rmqueue_steal(zs: Any, order: int, mt: int) -> int:
    """Mirrors __rmqueue_steal(), 6.19: smallest first, the block keeps its type."""
    for current_order in range(order, NR_ORDERS):
        fallback_mt = find_suitable_fallback(zs, current_order, mt)
        if fallback_mt < 0:
            continue
        page = first(zs, current_order, fallback_mt)
        del_page_from_free_list(zs, page)
        expand(zs, page, order, current_order, fallback_mt)  # page_del_and_expand()
        return page
    return -1


@_jit
def steal_suitable_fallback(zs: Any, page: int, start_type: int, whole_block: bool) -> None:
    """Mirrors steal_suitable_fallback(), 4.12 (KM 2.4)."""
    kind, bo, lmt, key, nxt, prv, bmt, skip, lh, lt, lc, sc, cnt, dem, pool, zp = zs
    old_block_type = bmt[page >> PAGEBLOCK_ORDER]
    current_order = bo[page]
    if current_order >= PAGEBLOCK_ORDER:
        _set_block_types(bmt, page, current_order, start_type)
        move_to_free_list(zs, page, start_type, False)  # single_page: list_move
        return
    if not whole_block:
        move_to_free_list(zs, page, start_type, False)  # single_page: list_move
        return
    # move_freepages_block(): every free head of the block to start_type's lists (list_move,
    # head), counting free pages and PageLRU pages; the block is retyped only if enough.
    block = page >> PAGEBLOCK_ORDER
    start = block << PAGEBLOCK_ORDER
    free_pages = 0
    movable_pages = 0
    pfn = start
    while pfn < start + PAGEBLOCK_NR_PAGES:
        head_order = bo[pfn]
        if head_order >= 0:
            move_to_free_list(zs, pfn, start_type, False)
            free_pages += 1 << head_order
            pfn += 1 << head_order
            continue
        k = kind[pfn]
        if k == ANON or k == FILE or k == PIN:
            movable_pages += 1
        pfn += 1
    alike = _alike_pages(start_type, old_block_type, free_pages, movable_pages)
    if free_pages + alike >= PAGEBLOCK_NR_PAGES // 2:
        bmt[block] = start_type


@_jit
def __rmqueue_fallback(zs: Any, order: int, start_mt: int) -> bool:
    """Mirrors __rmqueue_fallback(), 4.12: largest first; True if a block was stolen."""
    for current_order in range(MAX_PAGE_ORDER, order - 1, -1):
        fallback_mt = find_suitable_fallback(zs, current_order, start_mt)
        if fallback_mt < 0:
            continue
        page = first(zs, current_order, fallback_mt)
        steal_suitable_fallback(zs, page, start_mt, can_claim(current_order, start_mt))
        return True
    return False


@_jit
def rmqueue(zs: Any, order: int, mt: int) -> int:
    """rmqueue() -> __rmqueue() of the profile (KM 2.3); no per-cpu lists, no CMA (TM 2.1)."""
    if zs[15][P_V6]:
        page = __rmqueue_smallest(zs, order, mt)
        if page < 0:
            page = __rmqueue_claim(zs, order, mt)
        if page < 0:
            page = __rmqueue_steal(zs, order, mt)
        return page
    while True:  # 4.12: retry after every successful fallback
        page = __rmqueue_smallest(zs, order, mt)
        if page >= 0:
            return page
        if not __rmqueue_fallback(zs, order, mt):
            return -1


# ---------------------------------------------------------------------------------------
# Watermarks (TM 2.3, KM 3.2)
# ---------------------------------------------------------------------------------------


@_jit
def zone_watermark_ok(zs: Any, order: int, mark: int) -> bool:
    """Mirrors __zone_watermark_ok() with no reserves, boost, lowmem_reserve or CMA."""
    lc = zs[10]
    free_pages = zs[11][S_NR_FREE] - ((1 << order) - 1)
    if free_pages <= mark:
        return False
    if order == 0:
        return True
    for i in range(order * NR_MT, NR_ORDERS * NR_MT):
        if lc[i] > 0:
            return True
    return False


@_jit
def get_page(zs: Any, order: int, mark: int, mt: int) -> int:
    """get_page_from_freelist() for the one zone: rmqueue() if the watermark is met."""
    if zone_watermark_ok(zs, order, mark):
        return rmqueue(zs, order, mt)
    return -1


# ---------------------------------------------------------------------------------------
# Fragmentation metrics (mm/vmstat.c, as kernels/metrics.py: exact integer arithmetic)
# ---------------------------------------------------------------------------------------


@_jit
def fragmentation_index(lc: Any, order: int) -> int:
    """__fragmentation_index() (kernels.metrics.fragmentation_index) at one order."""
    free_pages = 0
    total = 0
    suitable = 0
    for o in range(NR_ORDERS):
        c = nr_free_order(lc, o)
        free_pages += c << o
        total += c
        if o >= order:
            suitable += c << (o - order)
    if total == 0:
        return 0
    if suitable > 0:
        return -1000
    return 1000 - (1000 + ((free_pages * 1000) >> order)) // total


@_jit
def fragmentation_score(lc: Any) -> int:
    """fragmentation_score_zone(): extfrag_for_order() at COMPACTION_HPAGE_ORDER (KM 5.3)."""
    free_pages = 0
    suitable = 0
    for o in range(NR_ORDERS):
        c = nr_free_order(lc, o)
        free_pages += c << o
        if o >= PAGEBLOCK_ORDER:
            suitable += c << (o - PAGEBLOCK_ORDER)
    if free_pages == 0:
        return 0
    return (free_pages - (suitable << PAGEBLOCK_ORDER)) * 100 // free_pages


@_jit
def node_score(zs: Any) -> int:
    """fragmentation_score_node() of a one-zone node: N * s // (N + 1) (KM errata 10)."""
    n = zs[15][P_N]
    return n * fragmentation_score(zs[10]) // (n + 1)


@_jit
def fragmentation_score_wmark(zs: Any, low: bool) -> int:
    """fragmentation_score_wmark(), 6.19 (KM 5.3)."""
    wmark_low = 100 - zs[15][P_PROACTIVENESS]
    if low:
        return wmark_low
    return imin(wmark_low + imin(10, wmark_low // 2), 100)


# ---------------------------------------------------------------------------------------
# Compaction suitability and deferral (TM 3.1, 3.2; KM 4.2, 4.9)
# ---------------------------------------------------------------------------------------


@_jit
def __compaction_suitable(zs: Any, order: int) -> bool:
    """Mirrors __compaction_suitable(): order-0 check at MIN + compact_gap (+LOW-MIN)."""
    sc = zs[11]
    watermark = sc[S_WMIN] + (2 << order)  # compact_gap(order)
    if order > 3:  # PAGE_ALLOC_COSTLY_ORDER
        watermark += sc[S_WLOW] - sc[S_WMIN]
    return sc[S_NR_FREE] > watermark


@_jit
def fragindex_ok(zs: Any, order: int) -> bool:
    """Costly orders: not (0 <= fragmentation_index <= sysctl_extfrag_threshold = 500)."""
    if order <= 3:
        return True
    index = fragmentation_index(zs[10], order)
    return not (0 <= index <= 500)


@_jit
def compaction_suitable(zs: Any, order: int) -> int:
    """compaction_suit_allocation_order() / 4.12 compaction_suitable(), mark = MIN."""
    if zone_watermark_ok(zs, order, zs[11][S_WMIN]):
        return COMPACT_SUCCESS
    if not __compaction_suitable(zs, order) or not fragindex_ok(zs, order):
        return COMPACT_SKIPPED
    return COMPACT_CONTINUE


@_jit
def compaction_deferred(sc: Any, order: int) -> bool:
    """Mirrors compaction_deferred(), mm/compaction.c (KM 4.9)."""
    if order < sc[S_ORDER_FAILED]:
        return False
    sc[S_CONSIDERED] += 1
    if sc[S_CONSIDERED] >= 1 << sc[S_DEFER_SHIFT]:
        sc[S_CONSIDERED] = 1 << sc[S_DEFER_SHIFT]
        return False
    return True


@_jit
def defer_compaction(sc: Any, order: int) -> None:
    """Mirrors defer_compaction() (KM 4.9)."""
    sc[S_CONSIDERED] = 0
    sc[S_DEFER_SHIFT] = imin(sc[S_DEFER_SHIFT] + 1, COMPACT_MAX_DEFER_SHIFT)
    if order < sc[S_ORDER_FAILED]:
        sc[S_ORDER_FAILED] = order


@_jit
def compaction_defer_reset(sc: Any, order: int, alloc_success: bool) -> None:
    """Mirrors compaction_defer_reset() (KM 4.9)."""
    if alloc_success:
        sc[S_CONSIDERED] = 0
        sc[S_DEFER_SHIFT] = 0
    if order >= sc[S_ORDER_FAILED]:
        sc[S_ORDER_FAILED] = order + 1


@_jit
def compaction_restarting(sc: Any, order: int) -> bool:
    """Mirrors compaction_restarting() (KM 4.9)."""
    return (
        order >= sc[S_ORDER_FAILED]
        and sc[S_DEFER_SHIFT] == COMPACT_MAX_DEFER_SHIFT
        and sc[S_CONSIDERED] >= 1 << COMPACT_MAX_DEFER_SHIFT
    )


@_jit
def __reset_isolation_suitable(zs: Any) -> None:
    """Mirrors __reset_isolation_suitable() (KM 4.8); 6.19 only after a flagged sweep."""
    skip = zs[7]
    sc = zs[11]
    zp = zs[15]
    if zp[P_V6] and not sc[S_BLOCKSKIP_FLUSH]:
        return
    skip[:] = 0
    sc[S_CACHED_MIGRATE] = 0  # reset_cached_positions()
    sc[S_CACHED_FREE] = zp[P_B] - 1
    sc[S_BLOCKSKIP_FLUSH] = 0


@_jit
def reset_isolation_suitable(zs: Any) -> None:
    """Mirrors reset_isolation_suitable(pgdat), called by kswapd going to sleep."""
    if zs[11][S_BLOCKSKIP_FLUSH]:
        __reset_isolation_suitable(zs)


# ---------------------------------------------------------------------------------------
# compact_zone (TM 3.3-3.5; KM 4.3-4.8)
# ---------------------------------------------------------------------------------------


@_jit
def demand_met(zs: Any) -> bool:
    """The proactive_demand stop rule (TM 3.6, KM 5.5; not upstream)."""
    lc = zs[10]
    dem = zs[13]
    for order in range(1, NR_ORDERS):
        if dem[order] > 0:
            available = 0
            for j in range(order, NR_ORDERS):
                available += nr_free_order(lc, j) << (j - order)
            if available < dem[order]:
                return False
    return True


@_jit
def compact_finished(zs: Any) -> int:
    """Mirrors compact_finished() / __compact_finished() (KM 4.4), block granularity."""
    lc = zs[10]
    sc = zs[11]
    dem = zs[13]
    zp = zs[15]
    if sc[C_F] <= sc[C_M]:  # compact_scanners_met()
        sc[S_CACHED_MIGRATE] = 0  # reset_cached_positions()
        sc[S_CACHED_FREE] = zp[P_B] - 1
        if sc[C_DIRECT]:
            sc[S_BLOCKSKIP_FLUSH] = 1
        return COMPACT_COMPLETE if sc[C_WHOLE_ZONE] else COMPACT_PARTIAL_SKIPPED
    if sc[C_PROACTIVE]:
        if fragmentation_score(lc) <= fragmentation_score_wmark(zs, True):
            return COMPACT_SUCCESS
        return COMPACT_CONTINUE
    order = sc[C_ORDER]
    if order == -1:
        return COMPACT_CONTINUE
    if zp[P_STOP_BELOW_WMARK] and not __compaction_suitable(zs, order):
        return COMPACT_PARTIAL_SKIPPED  # seed 000 patch 5 (KM 4.2 end, 5.5)
    if sc[C_DEMAND]:
        any_demand = False
        for o in range(1, NR_ORDERS):
            if dem[o] != 0:
                any_demand = True
        if any_demand:
            return COMPACT_SUCCESS if demand_met(zs) else COMPACT_CONTINUE
    mt = sc[C_MT]
    for o in range(order, NR_ORDERS):
        if lc[o * NR_MT + mt] > 0:
            return COMPACT_SUCCESS
        if can_claim(o, mt) and (
            lc[o * NR_MT + fallback_of(mt, 0)] > 0 or lc[o * NR_MT + fallback_of(mt, 1)] > 0
        ):
            return COMPACT_SUCCESS
    return COMPACT_CONTINUE


@_inline
def isolation_suitable(skip: Any, sc: Any, block: int) -> bool:
    """isolation_suitable(): skip_ok(m) of TM 3.3."""
    return sc[C_IGNORE_SKIP] != 0 or skip[block] == 0


@_inline
def suitable_migration_source(bmt: Any, sc: Any, v6: bool, block: int) -> bool:
    """suitable_migration_source() (6.19) / migrate_async_suitable() (4.12): async_ok(m)."""
    if v6:
        if not (sc[C_MODE] == MIGRATE_ASYNC and sc[C_DIRECT]):
            return True
        if sc[C_MT] == M:
            return bmt[block] == M  # is_migrate_movable() (no CMA blocks)
        return bmt[block] == sc[C_MT]
    return sc[C_MODE] != MIGRATE_ASYNC or bmt[block] == M


@_jit
def isolate_migratepages(zs: Any) -> bool:
    """Mirrors isolate_migratepages()'s block loop (KM 4.5.1): find the next source block.

    Returns False when the scanners met (compact_finished() then sees it).
    """
    bmt = zs[6]
    skip = zs[7]
    sc = zs[11]
    v6 = zs[15][P_V6] != 0
    while sc[C_M] < sc[C_F]:
        m = sc[C_M]
        ok = isolation_suitable(skip, sc, m)
        if ok and suitable_migration_source(bmt, sc, v6, m):
            break
        if v6 and ok:
            # !suitable_migration_source: update_cached_migrate(cc, block_end_pfn)
            sc[S_CACHED_MIGRATE] = imax(sc[S_CACHED_MIGRATE], m + 1)
        sc[C_M] = m + 1
    return sc[C_M] < sc[C_F]


@_jit
def suitable_migration_target(zs: Any, block: int) -> bool:
    """target_ok(f) of TM 3.5: isolation_suitable() + suitable_migration_target()."""
    kind = zs[0]
    bo = zs[1]
    sc = zs[11]
    if not isolation_suitable(zs[7], sc, block):
        return False
    if zs[6][block] != M:  # is_migrate_movable() (no CMA blocks)
        return False
    start = block << PAGEBLOCK_ORDER
    limit = sc[C_ORDER] if sc[C_ORDER] > 0 else PAGEBLOCK_ORDER
    return not (kind[start] == FREE and bo[start] >= limit)


@_inline
def update_pageblock_skip_free(zs: Any, block: int, isolated: int) -> None:
    """after_target_block(f, isolated) of TM 3.5 (KM 4.8)."""
    sc = zs[11]
    if zs[15][P_V6] or (not sc[C_IGNORE_SKIP] and isolated == 0):
        zs[7][block] = 1
        sc[S_CACHED_FREE] = imin(sc[S_CACHED_FREE], block - 1)


@_inline
def update_pageblock_skip_migrate(zs: Any, block: int, isolated: int) -> None:
    """after_source_block(m, isolated) of TM 3.4 (KM 4.8, errata 3-5)."""
    sc = zs[11]
    if zs[15][P_V6] or (not sc[C_IGNORE_SKIP] and isolated == 0):
        zs[7][block] = 1
        sc[S_CACHED_MIGRATE] = imax(sc[S_CACHED_MIGRATE], block + 1)


@_jit
def isolate_freepages(zs: Any, need: int) -> None:
    """Mirrors isolate_freepages() + isolate_freepages_block() (TM 3.5, KM 4.6).

    Walks pageblocks down from f, each upward from its start, isolating whole free buddy
    blocks (kind -> ISOFREE) until the pool holds ``need`` pages. Stride 1, no fast search.
    """
    kind, bo, lmt, key, nxt, prv, bmt, skip, lh, lt, lc, sc, cnt, dem, pool, zp = zs
    v6 = zp[P_V6] != 0
    while sc[S_POOL] < need:
        f = sc[C_F]
        if f <= sc[C_M]:
            return  # scanners met
        if sc[C_ISO] == f << PAGEBLOCK_ORDER and not suitable_migration_target(zs, f):
            sc[C_F] = f - 1
            sc[C_ISO] = (f - 1) << PAGEBLOCK_ORDER
            continue
        if sc[C_ISO] == (f + 1) << PAGEBLOCK_ORDER:  # block fully scanned
            update_pageblock_skip_free(zs, f, sc[C_ISOLATED_IN_F])
            sc[C_F] = f - 1
            sc[C_ISO] = (f - 1) << PAGEBLOCK_ORDER
            sc[C_ISOLATED_IN_F] = 0
            continue
        pfn = sc[C_ISO]
        order = bo[pfn]
        if kind[pfn] == FREE and order >= 0:  # PageBuddy
            # __isolate_free_page(): order-0 watermark check at MIN + 2^order
            if not sc[S_NR_FREE] > sc[S_WMIN] + (1 << order):
                return
            del_page_from_free_list(zs, pfn)
            nr_pages = 1 << order
            for target in range(pfn, pfn + nr_pages):
                set_kind(kind, sc, target, ISOFREE)
                pool_push(pool, sc, target)
            sc[C_ISOLATED_IN_F] += nr_pages
            cnt[N_COMPACT_ISOLATED] += nr_pages  # COMPACTISOLATED counts both scanners
            sc[C_FREE_SCANNED] += nr_pages if v6 else 1
            sc[C_ISO] = pfn + nr_pages
        else:  # !PageBuddy (allocated, or a tail of an order-10 block from below)
            sc[C_FREE_SCANNED] += 1
            sc[C_ISO] = pfn + 1


@_jit
def process_source_block(zs: Any, cand: Any) -> bool:
    """isolate_migratepages_block() + migrate_pages() + freeing, one block (TM 3.4).

    ``cand`` is a 512-entry scratch buffer for the isolated PFNs. Returns False when the
    run ends COMPACT_CONTENDED (-ENOMEM before the scanners met).
    """
    kind, bo, lmt, key, nxt, prv, bmt, skip, lh, lt, lc, sc, cnt, dem, pool, zp = zs
    v6 = zp[P_V6] != 0
    skip_pinned = zp[P_SKIP_PINNED] != 0
    m = sc[C_M]
    start = m << PAGEBLOCK_ORDER
    end = start + PAGEBLOCK_NR_PAGES

    # The scanner's walk: free heads are jumped over (6.19 counts their span, 4.12 one
    # struct page), every other page is visited.
    pfn = start
    while pfn < end:
        order = bo[pfn]
        if order >= 0:
            sc[C_MIGRATE_SCANNED] += (1 << order) if v6 else 1
            pfn += 1 << order
        else:
            sc[C_MIGRATE_SCANNED] += 1
            pfn += 1
    # An order-10 head at the block start: block m + 1 is processed next (step 1).

    # Candidates: ANON, FILE (and PIN unless skip_pinned). skip_on_failure (async direct
    # compaction for order > 0): a non-isolatable page spoils its cc->order-aligned chunk.
    chunk = PAGEBLOCK_NR_PAGES
    skip_on_failure = sc[C_MODE] == MIGRATE_ASYNC and sc[C_DIRECT] and sc[C_ORDER] > 0
    if skip_on_failure:
        chunk = imin(1 << sc[C_ORDER], PAGEBLOCK_NR_PAGES)
    nr_cand = 0
    for c0 in range(start, end, chunk):
        if skip_on_failure:
            spoiled = False
            for p in range(c0, c0 + chunk):
                k = kind[p]
                if not (k == FREE or k == ANON or k == FILE or (k == PIN and not skip_pinned)):
                    spoiled = True
                    break
            if spoiled:
                continue
        for p in range(c0, c0 + chunk):
            k = kind[p]
            if k == ANON or k == FILE or (k == PIN and not skip_pinned):
                cand[nr_cand] = p
                nr_cand += 1
    cnt[N_COMPACT_ISOLATED] += nr_cand  # the free scanner adds its own (TM 3.5)
    need = 0
    last_window = -1
    for i in range(nr_cand):
        p = cand[i]
        if p >> 5 != last_window:  # distinct SWAP_CLUSTER_MAX windows (ascending PFNs)
            cnt[N_LRU_LOCK] += 1
            last_window = p >> 5
        if kind[p] != PIN:
            need += 1
    if sc[S_POOL] < need:
        isolate_freepages(zs, need)

    # migrate_pages(): ascending over the candidates, targets lowest PFN first. The
    # migrated sources are compacted to the front of cand (ascending, as freed).
    enomem = False
    nr_migrated = 0
    for i in range(nr_cand):
        src = cand[i]
        if kind[src] == PIN:
            cnt[N_PGMIGRATE_FAIL] += 1  # -EAGAIN on every pass; never takes a target
            continue
        if sc[S_POOL] == 0:
            cnt[N_PGMIGRATE_FAIL] += 1  # compaction_alloc() returned NULL: -ENOMEM
            enomem = True
            break
        target = pool_pop(pool, sc)
        set_kind(kind, sc, target, kind[src])
        set_kind(kind, sc, src, FREE)
        cand[nr_migrated] = src
        nr_migrated += 1
        cnt[N_PGMIGRATE_SUCCESS] += 1
    # free_pages_ascending(migrated): the sources are FREE already (NR_FREE counted).
    for i in range(nr_migrated):
        __free_one_page(zs, cand[i], 0)

    if enomem:
        if sc[C_F] > sc[C_M]:
            return False  # COMPACT_CONTENDED: no after_source_block
        sc[C_M] += 1
        return True
    update_pageblock_skip_migrate(zs, m, nr_cand)
    sc[C_M] += 1
    return True


@_jit
def release_freepages(zs: Any) -> None:
    """release_free_list(): unused targets back to the buddy; cached_free moves up."""
    kind = zs[0]
    sc = zs[11]
    pool = zs[14]
    last = -1
    while sc[S_POOL] > 0:  # ascending PFN order
        pfn = pool_pop(pool, sc)
        set_kind(kind, sc, pfn, FREE)
        __free_one_page(zs, pfn, 0)
        last = pfn
    if last >= 0:
        sc[S_CACHED_FREE] = imax(sc[S_CACHED_FREE], last >> PAGEBLOCK_ORDER)


@_jit
def compact_zone(
    zs: Any,
    cand: Any,
    order: int,
    mode: int,
    mt: int,
    direct: bool,
    whole_zone: bool,
    ignore_skip_hint: bool,
    proactive: bool,
    demand: bool,
) -> int:
    """Mirrors compact_zone(), mm/compaction.c (TM 3.3, KM 4.3); sets up cc in ``sc``."""
    sc = zs[11]
    cnt = zs[12]
    zp = zs[15]
    sc[C_ORDER] = order
    sc[C_MODE] = mode
    sc[C_MT] = mt
    sc[C_DIRECT] = direct
    sc[C_WHOLE_ZONE] = whole_zone
    sc[C_IGNORE_SKIP] = ignore_skip_hint
    sc[C_PROACTIVE] = proactive
    sc[C_DEMAND] = demand
    sc[C_MIGRATE_SCANNED] = 0
    sc[C_FREE_SCANNED] = 0
    sc[S_POOL] = 0
    if order > 0 and not proactive:
        ret = compaction_suitable(zs, order)
        if ret != COMPACT_CONTINUE:
            return ret
    if order > 0 and compaction_restarting(sc, order):
        __reset_isolation_suitable(zs)
    if whole_zone:
        sc[C_M] = 0
        sc[C_F] = zp[P_B] - 1
    else:
        sc[C_M] = sc[S_CACHED_MIGRATE]
        sc[C_F] = sc[S_CACHED_FREE]
        if sc[C_M] == 0:
            sc[C_WHOLE_ZONE] = 1
    sc[C_ISO] = sc[C_F] << PAGEBLOCK_ORDER
    sc[C_ISOLATED_IN_F] = 0

    while True:
        ret = compact_finished(zs)
        if ret != COMPACT_CONTINUE:
            break
        if not isolate_migratepages(zs):
            continue  # the scanners met: compact_finished() reports it
        if not process_source_block(zs, cand):
            ret = COMPACT_CONTENDED
            break

    release_freepages(zs)
    cnt[N_COMPACT_MIGRATE_SCANNED] += sc[C_MIGRATE_SCANNED]
    cnt[N_COMPACT_FREE_SCANNED] += sc[C_FREE_SCANNED]
    return ret


# ---------------------------------------------------------------------------------------
# Callers: direct compaction, kswapd, kcompactd, proactive compaction (TM 3.6)
# ---------------------------------------------------------------------------------------


@_jit
def direct_compact(zs: Any, cand: Any, order: int, prio: int, mt: int, status: Any) -> int:
    """__alloc_pages_direct_compact() + try_to_compact_pages() on one zone (KM 4.10).

    Returns the page (-1: none); the compact_result goes to ``status[0]``.
    """
    sc = zs[11]
    cnt = zs[12]
    if compaction_deferred(sc, order):
        st = COMPACT_DEFERRED
    else:
        st = compact_zone(zs, cand, order, prio, mt, True, False, False, False, False)
        if st == COMPACT_SUCCESS:
            compaction_defer_reset(sc, order, False)
        elif prio != MIGRATE_ASYNC and (st == COMPACT_COMPLETE or st == COMPACT_PARTIAL_SKIPPED):
            defer_compaction(sc, order)
    status[0] = st
    # 6.19: only SKIPPED avoids the stall; 4.12: result <= COMPACT_INACTIVE (= DEFERRED).
    if st == COMPACT_SKIPPED or (not zs[15][P_V6] and st == COMPACT_DEFERRED):
        return -1
    cnt[N_COMPACT_STALL] += 1
    page = get_page(zs, order, sc[S_WMIN], mt)
    if page >= 0:
        sc[S_BLOCKSKIP_FLUSH] = 0
        compaction_defer_reset(sc, order, True)
        cnt[N_COMPACT_SUCCESS] += 1
    else:
        cnt[N_COMPACT_FAIL] += 1
    return page


@_jit
def reclaim(zs: Any, taken: Any, nr_to_reclaim: int) -> int:
    """Shrink the page cache: the first nr FILE pages from the CLOCK hand (TM 3.6).

    ``taken`` is a scratch buffer of at least ``nr_to_reclaim`` entries.
    """
    kind = zs[0]
    sc = zs[11]
    n = zs[15][P_N]
    cursor = sc[S_RECLAIM_CURSOR]
    nr = 0
    for pass_ in range(2):  # wrapping once around the zone
        lo = cursor if pass_ == 0 else 0
        hi = n if pass_ == 0 else cursor
        pfn = lo
        while nr < nr_to_reclaim and pfn < hi:
            if kind[pfn] == FILE:
                taken[nr] = pfn
                nr += 1
            pfn += 1
    if nr:
        sc[S_KSWAPD_FAILURES] = 0  # reclaim made progress
        # "the last taken pfn" in the hand's walk order (after a wrap, below the cursor)
        sc[S_RECLAIM_CURSOR] = (taken[nr - 1] + 1) % n
        free_pages_ascending(zs, taken, nr)
    return nr


@_jit
def wakeup_kcompactd(zs: Any, order: int) -> None:
    """Mirrors wakeup_kcompactd() + kcompactd_node_suitable() (KM 5.1)."""
    sc = zs[11]
    dem = zs[13]
    mode = zs[15][P_KCOMPACTD]
    if order == 0 or mode == KCOMPACTD_NONE:
        return
    if mode == KCOMPACTD_PROACTIVE_DEMAND:
        for o in range(NR_ORDERS - 1, 0, -1):
            if dem[o] > 0:
                order = imax(order, o)
                break
    sc[S_KCD_MAX_ORDER] = imax(sc[S_KCD_MAX_ORDER], order)
    if compaction_suitable(zs, sc[S_KCD_MAX_ORDER]) == COMPACT_CONTINUE:
        sc[S_KCD_PENDING] = 1


@_jit
def wakeup_kswapd(zs: Any, order: int, direct_reclaim_allowed: bool) -> None:
    """Mirrors wakeup_kswapd() (KM 5.1): 6.19 wakes kcompactd for a balanced node."""
    sc = zs[11]
    if sc[S_KSWAPD_FAILURES] >= MAX_RECLAIM_RETRIES or zone_watermark_ok(
        zs, order, sc[S_WHIGH]
    ):  # hopeless node, or pgdat_balanced()
        if zs[15][P_V6] and not direct_reclaim_allowed:
            wakeup_kcompactd(zs, order)
        return
    if not sc[S_KSWAPD_AWAKE]:
        sc[S_KSWAPD_AWAKE] = 1
        sc[S_KSWAPD_RECLAIMED] = 0
        zs[12][N_KSWAPD_WAKE] += 1
    sc[S_KSWAPD_ORDER] = imax(sc[S_KSWAPD_ORDER], order)


@_jit
def kswapd_try_to_sleep(zs: Any) -> None:
    """kswapd_try_to_sleep(): reset skip bits if flagged, kick kcompactd, sleep."""
    sc = zs[11]
    reset_isolation_suitable(zs)
    wakeup_kcompactd(zs, sc[S_KSWAPD_ORDER])
    sc[S_KSWAPD_AWAKE] = 0
    sc[S_KSWAPD_ORDER] = 0


@_jit
def kswapd_step(zs: Any, taken: Any) -> None:
    """One tick of kswapd (balance_pgdat(), KM 5.1, 11.4), up to kswapd_rounds rounds."""
    sc = zs[11]
    if not sc[S_KSWAPD_AWAKE]:
        return
    for _ in range(zs[15][P_KSWAPD_ROUNDS]):
        # kswapd_shrink_node(): order -> 0 once compact_gap(order) pages were reclaimed
        order = sc[S_KSWAPD_ORDER] if sc[S_KSWAPD_RECLAIMED] < (2 << sc[S_KSWAPD_ORDER]) else 0
        if zone_watermark_ok(zs, order, sc[S_WHIGH]):
            kswapd_try_to_sleep(zs)
            return
        nr = reclaim(zs, taken, SWAP_CLUSTER_MAX)
        sc[S_KSWAPD_RECLAIMED] += nr
        zs[12][N_PGSTEAL_KSWAPD] += nr
        if nr == 0:  # nothing to reclaim: the node is hopeless
            sc[S_KSWAPD_FAILURES] = MAX_RECLAIM_RETRIES
            kswapd_try_to_sleep(zs)
            return


@_jit
def kcompactd_do_work(zs: Any, cand: Any) -> None:
    """Mirrors kcompactd_do_work() (KM 5.2) for the one zone."""
    sc = zs[11]
    cnt = zs[12]
    zp = zs[15]
    cnt[N_DAEMON_WAKE] += 1
    order = sc[S_KCD_MAX_ORDER]
    if not compaction_deferred(sc, order) and compaction_suitable(zs, order) == COMPACT_CONTINUE:
        status = compact_zone(
            zs, cand, order, MIGRATE_SYNC_LIGHT, U,  # GFP_KERNEL
            False, False, zp[P_V6] == 0, False, zp[P_KCOMPACTD] == KCOMPACTD_PROACTIVE_DEMAND,
        )  # fmt: skip
        if status == COMPACT_SUCCESS:
            compaction_defer_reset(sc, order, False)
        elif status == COMPACT_COMPLETE or status == COMPACT_PARTIAL_SKIPPED:
            defer_compaction(sc, order)
        cnt[N_DAEMON_MIGRATE_SCANNED] += sc[C_MIGRATE_SCANNED]
        cnt[N_DAEMON_FREE_SCANNED] += sc[C_FREE_SCANNED]
    sc[S_KCD_MAX_ORDER] = 0
    sc[S_KCD_PENDING] = 0
    zs[13][:] = 0


@_jit
def proactive_compact_timer(zs: Any, cand: Any, t: int) -> None:
    """The 500 ms timeout of kcompactd(): should_proactive_compact_node() (KM 5.3)."""
    sc = zs[11]
    cnt = zs[12]
    zp = zs[15]
    if t < sc[S_PROACTIVE_NEXT]:
        return
    period = zp[P_PROACTIVE_PERIOD]
    sc[S_PROACTIVE_NEXT] = t + period
    if (
        zp[P_PROACTIVENESS] > 0
        and not sc[S_KSWAPD_AWAKE]
        and node_score(zs) > fragmentation_score_wmark(zs, False)
    ):
        prev_score = node_score(zs)
        compact_zone(zs, cand, -1, MIGRATE_SYNC_LIGHT, U, False, True, True, True, False)
        cnt[N_DAEMON_MIGRATE_SCANNED] += sc[C_MIGRATE_SCANNED]
        cnt[N_DAEMON_FREE_SCANNED] += sc[C_FREE_SCANNED]
        if node_score(zs) >= prev_score:
            sc[S_PROACTIVE_NEXT] = t + 64 * period  # back off: 500 ms << MAX_DEFER_SHIFT


# ---------------------------------------------------------------------------------------
# The tick loop (TM 4)
# ---------------------------------------------------------------------------------------


@_jit
def phase_start(zs: Any, ph: Any, wm: Any) -> None:
    """Step 1: kill_anon / drop_caches (one ascending free sequence), min_free_kbytes.

    ``wm``: the phase's (wmark_min, wmark_low, wmark_high) from __setup_per_zone_wmarks().
    """
    kind = zs[0]
    sc = zs[11]
    kill_anon = ph[H_KILL_ANON] != 0
    drop_caches = ph[H_DROP_CACHES] != 0
    if kill_anon or drop_caches:
        for p in range(zs[15][P_N]):  # ascending; freeing changes no other page's kind
            k = kind[p]
            if (kill_anon and k == ANON) or (drop_caches and (k == FILE or k == RECL)):
                set_kind(kind, sc, p, FREE)
                __free_one_page(zs, p, 0)
    if ph[H_MIN_FREE_KBYTES]:
        sc[S_WMIN] = wm[0]
        sc[S_WLOW] = wm[1]
        sc[S_WHIGH] = wm[2]


@_jit
def background_frees(zs: Any, ph: Any, base: Any, t: int, probes: Any) -> None:
    """Step 2: F probes; the distinct probed pages of a free_kinds kind are freed."""
    kind = zs[0]
    sc = zs[11]
    nr = ph[H_FREES]
    if nr == 0:
        return
    n = np.uint64(zs[15][P_N])
    mask = ph[H_FREE_KINDS]
    for j in range(nr):
        probes[j] = np.int64(hash_at(base, t * nr + j) % n)
    sort_ascending(probes, nr)
    prev = -1
    for j in range(nr):
        p = probes[j]
        if p == prev:
            continue  # the probes form a set
        prev = p
        if (mask >> kind[p]) & 1:
            set_kind(kind, sc, p, FREE)
            __free_one_page(zs, p, 0)


@_jit
def background_allocs(zs: Any, ph: Any, base: Any, t: int, taken: Any) -> None:
    """Step 3: A order-0 allocations of kinds drawn from alloc_weights."""
    kind = zs[0]
    sc = zs[11]
    cnt = zs[12]
    nr = ph[H_ALLOCS]
    for j in range(nr):
        r = np.int64(hash_at(base, t * nr + j) >> U64_32)
        if r < ph[H_THR0]:
            k, mt = ANON, M
        elif r < ph[H_THR1]:
            k, mt = FILE, M
        elif r < ph[H_THR2]:
            k, mt = UNMOV, U
        else:
            k, mt = RECL, R
        if zone_watermark_ok(zs, 0, sc[S_WLOW]):
            page = rmqueue(zs, 0, mt)
        else:
            wakeup_kswapd(zs, 0, True)
            page = get_page(zs, 0, sc[S_WMIN], mt)
            if page < 0:
                cnt[N_DIRECT_RECLAIMED] += reclaim(zs, taken, SWAP_CLUSTER_MAX)
                page = get_page(zs, 0, sc[S_WMIN], mt)
        if page >= 0:
            set_kind(kind, sc, page, k)
            cnt[N_ALLOC_BACKGROUND] += 1
        else:
            cnt[N_ALLOC_BACKGROUND_FAIL] += 1


@_jit
def high_order_attempt(zs: Any, ph: Any, cand: Any, status: Any) -> int:
    """Step 4: one high-order attempt (__alloc_pages + the slow path, KM 4.10).

    Returns the page allocated (-1: the attempt failed); the caller keeps or frees it.
    """
    sc = zs[11]
    cnt = zs[12]
    v6 = zs[15][P_V6] != 0
    order = zs[15][P_ATTEMPT_ORDER]
    mt = ph[H_ATTEMPT_MT]
    gfp = ph[H_GFP]
    cnt[N_ALLOC_ATTEMPTS] += 1
    if zone_watermark_ok(zs, order, sc[S_WLOW]):  # fast path
        page = rmqueue(zs, order, mt)
    else:
        zs[13][order] += 1  # demand[order]
        wakeup_kswapd(zs, order, gfp != GFP_NOWAIT)
        page = get_page(zs, order, sc[S_WMIN], mt)
        if page < 0 and gfp == GFP_MOVABLE:  # GFP_HIGHUSER_MOVABLE, costly (KM 10.4)
            page = direct_compact(zs, cand, order, MIGRATE_ASYNC, mt, status)
            if page < 0:
                cnt[N_DIRECT_RECLAIMED] += reclaim(zs, cand, SWAP_CLUSTER_MAX)
                page = get_page(zs, order, sc[S_WMIN], mt)
            if page < 0:
                page = direct_compact(zs, cand, order, MIGRATE_SYNC_LIGHT, mt, status)
        if page < 0 and gfp == GFP_THP:  # GFP_TRANSHUGE | __GFP_NORETRY (KM 4.10)
            page = direct_compact(zs, cand, order, MIGRATE_ASYNC, mt, status)
            st = status[0]
            if page < 0 and not (st == COMPACT_DEFERRED or (v6 and st == COMPACT_SKIPPED)):
                cnt[N_DIRECT_RECLAIMED] += reclaim(zs, cand, SWAP_CLUSTER_MAX)
                page = get_page(zs, order, sc[S_WMIN], mt)
                if page < 0:
                    page = direct_compact(zs, cand, order, MIGRATE_ASYNC, mt, status)
    if page < 0:
        return -1
    cnt[N_ALLOC_SUCCESS] += 1
    kind = zs[0]
    for p in range(page, page + (1 << order)):
        set_kind(kind, sc, p, HELD)
    return page


@_jit
def nr_free_regions(zs: Any) -> int:
    """Memory regions with every page FREE (TM 6.5 sample; the last region may be partial)."""
    kind = zs[0]
    zp = zs[15]
    n = zp[P_N]
    size = zp[P_REGION_PAGES]
    nr = 0
    for r in range(zp[P_NR_REGIONS]):
        full = True
        for p in range(r * size, imin(r * size + size, n)):
            if kind[p] != FREE:
                full = False
                break
        if full:
            nr += 1
    return nr


@_jit
def tick(zs, ph, wm, t, i, bases, held, scratch, status, attempts, buddyinfo, nr_free, regions):
    """One tick (TM 4 steps 1-6): t is the global tick index, i the index within the phase.

    Phase start, frees, background allocations, the high-order attempt, kswapd_step(),
    kcompactd (the 500 ms timeout, kcompactd_do_work(), the proactive timer), the sample.
    ``held`` (k + 1, 2) holds this phase's kept (pfn, order) blocks, their count in
    ``held[-1, 0]``; ``attempts``, ``buddyinfo``, ``nr_free`` and ``regions`` are the
    zone's rows of the result, filled in order.
    """
    sc = zs[11]
    zp = zs[15]
    if i == 0:
        phase_start(zs, ph, wm)
    background_frees(zs, ph, bases[0], t, scratch)
    background_allocs(zs, ph, bases[1], t, scratch)
    every = ph[H_ATTEMPT_EVERY]
    if every > 0 and i % every == every - 1:
        page = high_order_attempt(zs, ph, scratch, status)
        attempts[sc[S_NR_ATTEMPTS]] = 1 if page >= 0 else 0
        sc[S_NR_ATTEMPTS] += 1
        if page >= 0:
            if ph[H_KEEP]:
                nh = held[held.shape[0] - 1, 0]
                held[nh, 0] = page
                held[nh, 1] = zp[P_ATTEMPT_ORDER]
                held[held.shape[0] - 1, 0] = nh + 1
            else:
                __free_pages(zs, page, zp[P_ATTEMPT_ORDER])
    kswapd_step(zs, scratch)
    if (
        zp[P_V6]
        and zp[P_KCOMPACTD] != KCOMPACTD_NONE
        and (t + 1) % zp[P_PROACTIVE_PERIOD] == 0
        and sc[S_KCD_MAX_ORDER] > 0
    ):
        sc[S_KCD_PENDING] = 1  # the 500 ms wait timed out with work requested (TM 3.6)
    if sc[S_KCD_PENDING]:
        kcompactd_do_work(zs, scratch)
    if zp[P_KCOMPACTD] == KCOMPACTD_PROACTIVE_SCORE:
        proactive_compact_timer(zs, scratch, t)
    every = zp[P_SAMPLE_EVERY]
    if t % every == every - 1:
        s = sc[S_NR_SAMPLES]
        lc = zs[10]
        for o in range(NR_ORDERS):
            buddyinfo[s, o] = nr_free_order(lc, o)
        nr_free[s] = sc[S_NR_FREE]
        regions[s] = nr_free_regions(zs)
        sc[S_NR_SAMPLES] = s + 1


@_jit
def _init_free_lists(zs: Any) -> None:
    """Boot-time free lists (TM 2 "Initial state", KM 2.2).

    The greedy decomposition of the FREE runs into the largest naturally aligned blocks,
    added in ascending PFN order, to the tail in 6.19 (FPI_TO_TAIL) and the head in 4.12.
    """
    kind = zs[0]
    bmt = zs[6]
    zp = zs[15]
    n = zp[P_N]
    v6 = zp[P_V6] != 0
    pfn = 0
    while pfn < n:
        if kind[pfn] != FREE:
            pfn += 1
            continue
        order = MAX_PAGE_ORDER
        while order > 0:
            if pfn & ((1 << order) - 1) == 0:
                ok = True
                for p in range(pfn, pfn + (1 << order)):
                    if kind[p] != FREE:
                        ok = False
                        break
                if ok:
                    break
            order -= 1
        add_to_free_list(zs, pfn, order, bmt[pfn >> PAGEBLOCK_ORDER], v6)
        pfn += 1 << order


@_jit
def init_zone(zs, seed, wm, held, bases):  # fmt: skip
    """The state of one zone before its first tick (TM 4), from ``kind`` and ``block_mt``.

    ``kind`` (``zs[0]``) and ``block_mt`` (``zs[6]``) hold the initial state and are
    updated in place; every other state array is (re)initialised here: the free lists of
    boot (_init_free_lists()), NR_FREE_PAGES, the watermarks ``wm[0]``, the cached scanner
    positions and the two random sequences' bases.
    """
    kind, bo, lmt, key, nxt, prv, bmt, skip, lh, lt, lc, sc, cnt, dem, pool, zp = zs
    n = zp[P_N]
    nb = zp[P_B]
    v6 = zp[P_V6] != 0
    bo[:] = -1
    lmt[:] = -1
    key[:] = 0
    skip[:] = 0
    lh[:] = -1
    lt[:] = -1
    lc[:] = 0
    sc[:] = 0
    cnt[:] = 0
    dem[:] = 0
    nr = 0
    for p in range(n):
        if kind[p] == FREE:
            nr += 1
    sc[S_NR_FREE] = nr
    sc[S_WMIN] = wm[0, 0]
    sc[S_WLOW] = wm[0, 1]
    sc[S_WHIGH] = wm[0, 2]
    # reset_cached_positions() at zone init: cached_migrate = 0, cached_free = B - 1.
    sc[S_CACHED_FREE] = nb - 1
    sc[S_ORDER_FAILED] = NR_ORDERS
    sc[S_PROACTIVE_NEXT] = zp[P_PROACTIVE_PERIOD] - 1
    sc[S_MPC_REGION] = -1  # regions (seed 002): no region noted (evacuation unsupported)
    if v6:
        # An order-10 free block over two pageblocks of different types: the upper one
        # takes the lower one's type (TM 2 "Initial state").
        for block in range(0, nb, 2):
            start = block << PAGEBLOCK_ORDER
            all_free = True
            for p in range(start, start + 2 * PAGEBLOCK_NR_PAGES):
                if kind[p] != FREE:
                    all_free = False
                    break
            if all_free:
                bmt[block + 1] = bmt[block]
    _init_free_lists(zs)
    held[held.shape[0] - 1, 0] = 0
    bases[0] = sequence_base(seed, np.uint64(0), np.uint64(STREAM_FREE))
    bases[1] = sequence_base(seed, np.uint64(0), np.uint64(STREAM_ALLOC))


@_jit
def run_ticks(zs, ph, wm, t0, t1, counters, attempts, buddyinfo, nr_free, regions, held,
              scratch, bases, status):  # fmt: skip
    """The program's global ticks t0 <= t < t1 on one zone set up by init_zone().

    Phases run in order; each tick in the range is tick(). A phase ending at global tick
    ``stop`` (its kept blocks freed in reverse, KM 10.1, and its counters recorded, after
    tick stop - 1) ends in the range t0 < stop <= t1, a phase of no ticks at the start in
    the first range. Consecutive ranges [0, c1), [c1, c2), ..., [ck, T) therefore run the
    whole program exactly once, in order, whatever their boundaries: the CPU runs it as
    one range, the GPU engine (sweep/cuda_tick.py) chunk by chunk.
    ``held`` (k + 1, 2) collects a phase's kept (pfn, order) blocks, their count in its
    last row, empty at every phase start; ``attempts``, ``buddyinfo``, ``nr_free`` and
    ``regions`` are the zone's rows of the result, filled in order.
    """
    last = held.shape[0] - 1
    start = 0
    for phase in range(ph.shape[0]):
        stop = start + ph[phase, H_TICKS]
        # A phase with ticks == 0 has no first tick: no start actions, counters recorded.
        for t in range(imax(start, t0), imin(stop, t1)):
            tick(
                zs, ph[phase], wm[phase + 1], t, t - start, bases, held, scratch, status,
                attempts, buddyinfo, nr_free, regions,
            )  # fmt: skip
        # The phase's end, after its last tick (global tick stop - 1).
        if t0 < stop <= t1 or stop == t0 == 0:
            for j in range(held[last, 0] - 1, -1, -1):  # __free_pages in reverse (KM 10.1)
                __free_pages(zs, held[j, 0], held[j, 1])
            held[last, 0] = 0
            cnt = zs[12]
            for c in range(NR_COUNTERS):
                counters[phase, c] = cnt[c]
        start = stop


@_jit
def run_zone(zs, seed, ph, wm, counters, attempts, buddyinfo, nr_free, regions, held, scratch,
             bases, status):  # fmt: skip
    """run_program_ref() for one zone (TM 4): state in ``zs``, results into the outputs.

    init_zone(), then run_ticks() over the whole program. ``wm`` (P + 1, 3): the initial
    watermarks, then those of each phase's min_free_kbytes. ``scratch`` (>= 512 and >=
    the largest frees_per_tick) serves the probes, reclaim and the migration candidates;
    ``bases`` (2,) uint64 and ``status`` (1,) int64 are scratch too.
    """
    init_zone(zs, seed, wm, held, bases)
    total = 0
    for phase in range(ph.shape[0]):
        total += ph[phase, H_TICKS]
    run_ticks(zs, ph, wm, 0, total, counters, attempts, buddyinfo, nr_free, regions, held,
              scratch, bases, status)  # fmt: skip


if _TARGET == "cpu":
    # The CPU entry points: every zone of the batch, compiled with the helpers above.

    @numba.njit(cache=True, parallel=True)
    def _run_zones_parallel(kind, bo, lmt, key, nxt, prv, bmt, skip, lh, lt, lc, sc, cnt, dem,
                            pool, zp, seeds, ph, wm, counters, attempts, buddyinfo, nr_free,
                            regions, held, scratch, bases, status):  # fmt: skip
        """Every zone of the batch, in parallel over zones (numba.prange)."""
        for z in numba.prange(kind.shape[0]):
            zs = (kind[z], bo[z], lmt[z], key[z], nxt[z], prv[z], bmt[z], skip[z], lh[z], lt[z],
                  lc[z], sc[z], cnt[z], dem[z], pool[z], zp[z])  # fmt: skip
            run_zone(
                zs, seeds[z], ph, wm[z], counters[z], attempts[z], buddyinfo[z], nr_free[z],
                regions[z], held[z], scratch[z], bases[z], status[z],
            )  # fmt: skip

    @numba.njit(cache=True)
    def _run_zones_serial(kind, bo, lmt, key, nxt, prv, bmt, skip, lh, lt, lc, sc, cnt, dem,
                          pool, zp, seeds, ph, wm, counters, attempts, buddyinfo, nr_free,
                          regions, held, scratch, bases, status):  # fmt: skip
        """The same, one zone after another on the calling thread."""
        for z in range(kind.shape[0]):
            zs = (kind[z], bo[z], lmt[z], key[z], nxt[z], prv[z], bmt[z], skip[z], lh[z], lt[z],
                  lc[z], sc[z], cnt[z], dem[z], pool[z], zp[z])  # fmt: skip
            run_zone(
                zs, seeds[z], ph, wm[z], counters[z], attempts[z], buddyinfo[z], nr_free[z],
                regions[z], held[z], scratch[z], bases[z], status[z],
            )  # fmt: skip

else:
    # The GPU entry points (sweep/cuda_tick.py): one thread per zone, the zone axis
    # across the grid; the samples are time-major (S, Z, ...) there, so the rows of a
    # chunk of ticks are one contiguous copy.

    @cuda.jit(cache=True)
    def _init_zones_kernel(kind, bo, lmt, key, nxt, prv, bmt, skip, lh, lt, lc, sc, cnt, dem,
                           pool, zp, seeds, wm, held, bases):  # fmt: skip
        """init_zone() of zone cuda.grid(1)."""
        z = cuda.grid(1)
        if z < kind.shape[0]:
            zs = (kind[z], bo[z], lmt[z], key[z], nxt[z], prv[z], bmt[z], skip[z], lh[z],
                  lt[z], lc[z], sc[z], cnt[z], dem[z], pool[z], zp[z])  # fmt: skip
            init_zone(zs, seeds[z], wm[z], held[z], bases[z])

    @cuda.jit(cache=True)
    def _run_ticks_kernel(kind, bo, lmt, key, nxt, prv, bmt, skip, lh, lt, lc, sc, cnt, dem,
                          pool, zp, ph, wm, t0, t1, counters, attempts, buddyinfo, nr_free,
                          regions, held, scratch, bases, status):  # fmt: skip
        """run_ticks(t0, t1) of zone cuda.grid(1), samples time-major."""
        z = cuda.grid(1)
        if z < kind.shape[0]:
            zs = (kind[z], bo[z], lmt[z], key[z], nxt[z], prv[z], bmt[z], skip[z], lh[z],
                  lt[z], lc[z], sc[z], cnt[z], dem[z], pool[z], zp[z])  # fmt: skip
            run_ticks(
                zs, ph, wm[z], t0, t1, counters[z], attempts[z], buddyinfo[:, z],
                nr_free[:, z], regions[:, z], held[z], scratch[z], bases[z], status[z],
            )  # fmt: skip


# ---------------------------------------------------------------------------------------
# Python entry point: validation (before any compute), buffers, results
# ---------------------------------------------------------------------------------------


def _unsupported(zones: TickZones, block_mt: np.ndarray, program: Program) -> str | None:
    """The first feature of the input the compiled engine does not implement, or None."""
    if (block_mt == MT_CMA).any():
        return "MIGRATE_CMA pageblocks (block_mt 4, tick-model.md 7.1)"
    return unsupported(zones, program)


def unsupported(zones: TickZones, program: Program) -> str | None:
    """The first per-zone option or phase feature the compiled engine does not implement
    (MIGRATE_CMA pageblocks aside, which are in the initial zones), or None."""
    for name in ("sorted_freelists", "region_evacuation", "region_worker_delayed"):
        if np.asarray(getattr(zones, name)).any():
            return f"memory-region option {name} (tick-model.md 6)"
    if (np.asarray(zones.contig_method) != CONTIG_NONE).any():
        return "contig_method (contiguous-allocation trials, tick-model.md 7)"
    if (np.asarray(zones.busy_file) != 0).any():
        return "busy_file (contiguous-allocation trials, tick-model.md 7.3)"
    for phase in program.phases:
        if phase.contig_every:
            return f"phase {phase.name}: contig_every (contiguous-allocation trials, 7.4)"
    return None


def _numpy_only(name: str, value: Any) -> np.ndarray:
    if type(value).__module__.split(".")[0] == "cupy" or hasattr(value, "__cuda_array_interface__"):
        raise TypeError(
            f"{name} is a CuPy (GPU) array; run_program_compiled takes NumPy arrays only "
            "(use kernels.tick.run_program on the GPU, or copy with .get())"
        )
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(value).__name__}")
    return value


def _profile(profile: Any) -> KernelProfile:
    """A KernelProfile, its value or its name ("v6_19"), as kernels.tick accepts."""
    try:
        if isinstance(profile, str):
            return KernelProfile[profile.upper()]
        return KernelProfile(profile)
    except (KeyError, ValueError):
        raise ValueError(
            f"profile must be a KernelProfile or its name (v4_12, v6_19), got {profile!r}"
        ) from None


def _phase_table(program: Program) -> np.ndarray:
    ph = np.zeros((len(program.phases), NR_PH), dtype=np.int64)
    for i, phase in enumerate(program.phases):
        thr = weight_thresholds(phase.alloc_weights)
        ph[i, H_TICKS] = phase.ticks
        ph[i, H_FREES] = phase.frees_per_tick
        ph[i, H_ALLOCS] = phase.allocs_per_tick
        ph[i, H_THR0 : H_THR3 + 1] = thr
        ph[i, H_FREE_KINDS] = sum(1 << k for k in set(phase.free_kinds))
        ph[i, H_ATTEMPT_EVERY] = phase.attempt_every
        ph[i, H_GFP] = phase.attempt_gfp
        ph[i, H_ATTEMPT_MT] = phase.attempt_mt
        ph[i, H_KEEP] = phase.keep
        ph[i, H_KILL_ANON] = phase.kill_anon
        ph[i, H_DROP_CACHES] = phase.drop_caches
        ph[i, H_MIN_FREE_KBYTES] = phase.min_free_kbytes
    return ph


class Buffers(NamedTuple):
    """Every array of a compiled run: ``state`` is the zone tuple (``zs`` order, one row
    per zone), then the inputs, the outputs and the scratch of run_zone()."""

    state: tuple[np.ndarray, ...]
    seeds: np.ndarray
    ph: np.ndarray
    wm: np.ndarray
    counters: np.ndarray
    attempts: np.ndarray
    buddyinfo: np.ndarray
    nr_free: np.ndarray
    regions: np.ndarray
    held: np.ndarray
    scratch: np.ndarray
    bases: np.ndarray
    status: np.ndarray


def prepare(
    kind: np.ndarray,
    block_mt: np.ndarray,
    zones: TickZones,
    program: Program,
    profile: Any,
    *,
    caller: str = "run_program_compiled",
) -> Buffers:
    """Validate the input of run_program_compiled() (before any compute: a ValueError or
    TypeError naming the problem) and allocate its buffers, the initial state copied."""
    kind = _numpy_only("kind", kind)
    block_mt = _numpy_only("block_mt", block_mt)
    if kind.ndim != 2 or kind.dtype != np.uint8:
        raise ValueError(f"kind must be a (Z, N) uint8 array, got {kind.dtype} {kind.shape}")
    z_n, n = kind.shape
    if n == 0 or n % (2 * PAGEBLOCK_NR_PAGES):
        raise ValueError(f"N must be a positive multiple of 1024, got {n}")
    nb = n // PAGEBLOCK_NR_PAGES
    if block_mt.shape != (z_n, nb):
        raise ValueError(f"block_mt must have shape {(z_n, nb)}, got {block_mt.shape}")
    if zones.nr_zones != z_n:
        raise ValueError(f"zones has {zones.nr_zones} zones, kind has {z_n}")
    if kind.size and (kind.min() < FREE or kind.max() > HELD):
        raise ValueError("initial kinds must be FREE..HELD (no ISOFREE)")
    if not np.isin(block_mt, (U, M, R, MT_CMA)).all():
        raise ValueError("block_mt must be UNMOVABLE, MOVABLE, RECLAIMABLE (or CMA: 4)")
    zones.validate()
    prof = _profile(profile)
    why = _unsupported(zones, block_mt, program)
    if why is not None:
        raise ValueError(f"{caller} does not support {why}")
    for phase in program.phases:
        bad = sorted(set(phase.free_kinds) - {ANON, FILE, UNMOV, RECL, PIN})
        if bad:  # a probe frees an allocated order-0 page (not FREE, not part of HELD)
            raise ValueError(f"phase {phase.name}: free_kinds may not contain {bad}")
        if phase.attempt_every and phase.attempt_gfp != GFP_NOWAIT:
            low = zones.attempt_order <= 3
            if low.any():
                raise ValueError(f"phase {phase.name}: movable/thp attempts need attempt_order > 3")

    nr_phases = len(program.phases)
    ph = _phase_table(program)
    # __setup_per_zone_wmarks() (KM 3.1): at start, then for each phase's min_free_kbytes.
    wm = np.zeros((z_n, nr_phases + 1, 3), dtype=np.int64)
    mfk = [np.asarray(zones.min_free_kbytes, dtype=np.int64)]
    mfk += [np.full(z_n, max(p.min_free_kbytes, 128), np.int64) for p in program.phases]
    for j, values in enumerate(mfk):
        w = setup_per_zone_wmarks(
            np.full(z_n, n, np.int64), values, np.full(z_n, program.watermark_scale_factor)
        )
        wm[:, j] = np.stack(w, axis=1)

    region_pages = np.asarray(zones.region_blocks, dtype=np.int64) << PAGEBLOCK_ORDER
    zp = np.zeros((z_n, NR_ZP), dtype=np.int64)
    zp[:, P_N] = n
    zp[:, P_B] = nb
    zp[:, P_V6] = prof == KernelProfile.V6_19
    zp[:, P_ATTEMPT_ORDER] = zones.attempt_order
    zp[:, P_KCOMPACTD] = zones.kcompactd
    zp[:, P_SKIP_PINNED] = zones.skip_pinned
    zp[:, P_STOP_BELOW_WMARK] = zones.stop_below_watermark
    zp[:, P_PROACTIVENESS] = zones.proactiveness
    zp[:, P_REGION_PAGES] = region_pages
    zp[:, P_NR_REGIONS] = -(-n // region_pages)
    zp[:, P_KSWAPD_ROUNDS] = program.kswapd_rounds
    zp[:, P_PROACTIVE_PERIOD] = program.proactive_period
    zp[:, P_SAMPLE_EVERY] = program.sample_every

    out_kind = np.array(kind, dtype=np.uint8, order="C")  # copies: the inputs are not written
    out_bmt = np.array(block_mt, dtype=np.int8, order="C")
    bo = np.empty((z_n, n), dtype=np.int8)
    lmt = np.empty((z_n, n), dtype=np.int8)
    key = np.empty((z_n, n), dtype=np.int64)
    nxt = np.empty((z_n, n), dtype=np.int32)
    prv = np.empty((z_n, n), dtype=np.int32)
    skip = np.empty((z_n, nb), dtype=np.uint8)
    lh = np.empty((z_n, NR_ORDERS * NR_MT), dtype=np.int64)
    lt = np.empty((z_n, NR_ORDERS * NR_MT), dtype=np.int64)
    lc = np.empty((z_n, NR_ORDERS * NR_MT), dtype=np.int64)
    sc = np.empty((z_n, NR_SC), dtype=np.int64)
    cnt = np.empty((z_n, NR_COUNTERS), dtype=np.int64)
    dem = np.empty((z_n, NR_ORDERS), dtype=np.int64)
    pool = np.empty((z_n, POOL_CAPACITY), dtype=np.int64)
    max_frees = max(p.frees_per_tick for p in program.phases)
    max_held = max(p.n_attempts if p.keep else 0 for p in program.phases)
    scratch = np.empty((z_n, max(SCRATCH_MIN, max_frees)), dtype=np.int64)
    held = np.empty((z_n, max_held + 1, 2), dtype=np.int64)
    bases = np.empty((z_n, 2), dtype=np.uint64)
    status = np.empty((z_n, 1), dtype=np.int64)
    n_samples = program.n_samples
    counters = np.zeros((z_n, nr_phases, NR_COUNTERS), dtype=np.int64)
    attempts = np.zeros((z_n, program.n_attempts), dtype=np.int8)
    buddyinfo = np.zeros((z_n, n_samples, NR_ORDERS), dtype=np.int64)
    nr_free = np.zeros((z_n, n_samples), dtype=np.int64)
    regions = np.zeros((z_n, n_samples), dtype=np.int64)
    seeds = np.ascontiguousarray(zones.seed, dtype=np.uint64)
    state = (out_kind, bo, lmt, key, nxt, prv, out_bmt, skip, lh, lt, lc, sc, cnt, dem, pool, zp)
    return Buffers(
        state, seeds, ph, wm, counters, attempts, buddyinfo, nr_free, regions, held, scratch,
        bases, status,
    )  # fmt: skip


def tick_result(b: Buffers) -> TickResult:
    """The TickResult of a finished run from its buffers (on the host)."""
    out_kind, bo, lmt, key, nxt, prv, out_bmt, skip, lh, lt, lc, sc, cnt, dem, pool, zp = b.state
    heads = bo >= 0
    return TickResult(
        kind=out_kind,
        block_mt=out_bmt,
        skip=skip.astype(bool),
        buddy_order=bo,
        list_mt=np.where(heads, lmt, np.int8(-1)).astype(np.int8),
        key=np.where(heads, key, np.int64(0)).astype(np.int64),
        counters=b.counters,
        buddyinfo=b.buddyinfo,
        nr_free=b.nr_free,
        attempts=b.attempts,
        scalars={name: sc[:, i].copy() for i, name in enumerate(SCALARS)},
        free_regions=b.regions,
        trials=np.zeros((out_kind.shape[0], 0, len(TRIAL_FIELDS)), dtype=np.int64),
    )


def run_program_compiled(
    kind: np.ndarray,
    block_mt: np.ndarray,
    zones: TickZones,
    program: Program,
    profile: Any,
    *,
    parallel: bool = True,
) -> TickResult:
    """Run ``program`` on every zone of the batch (TM 4), compiled; exactly the reference.

    Same inputs and result as ``kernels.tick.run_program`` and, zone by zone,
    ``tests.reference.tick.run_program_ref`` (mm/page_alloc.c, mm/compaction.c and
    mm/vmscan.c in the reference's control flow): ``kind`` (Z, N) uint8 with kinds
    FREE..HELD, ``block_mt`` (Z, N / 512) int8 in {0, 1, 2}; NumPy arrays only (the
    inputs are not written). Features outside TM 1-5 (see the module docstring) raise a
    ValueError naming them before anything runs. ``parallel=False`` runs the zones one
    after another on the calling thread.
    """
    b = prepare(kind, block_mt, zones, program, profile)
    run = _run_zones_parallel if parallel else _run_zones_serial
    run(*b.state, *b[1:])
    return tick_result(b)
