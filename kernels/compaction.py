"""Whole-zone compaction of many zones at once, exact against tests/reference/compaction.py.

Mirrors compact_zone() as compact_node() calls it for ``echo 1 >
/proc/sys/vm/compact_memory`` (order -1, MIGRATE_SYNC, whole_zone, ignore_skip_hint;
kernel-model.md 4.3-4.7, 4.11), for the ``v4_12`` and ``v6_19`` kernel profiles and both
pinned-page policies (seed 003). The model and its simplifications are stated in the
reference's module docstring; this module computes the same run without a loop over
pageblocks or pages (performance-notes.md 2):

1. **Page pass 1** compares every page once and packs the results into bit planes
   (free, isolatable-unit heads, pages of units that migrate, pinned, compound tails).
   Everything else reads 32/64-page words and ``(Z, B)`` pageblock arrays.
2. **Plan.** No scanner ever sees a page that has already changed (sources are vacated
   at or below the migrate scanner's block, targets taken strictly above it), so the
   source sequence, the target sequence and the isolation batches depend on the initial
   state only, and the run ends at the first failing *event*: a scanners-met check
   before an ``isolate_migratepages()`` call (E1: ``k <= cap_check(M)``) or a target
   request that the free scanner cannot serve (E2: ``k + n <= G(M_i)``), with ``k`` the
   pages migrated so far and ``G(m)`` the targets in pageblocks above ``m``. Caps never
   increase and ``k`` never decreases, so the first pageblock ``b0`` with
   ``Ksuc(b0 + 1) > G(b0 + 1)`` holds the stop, or the stop is the first check of
   ``b0 + 1``; only ``b0`` is evaluated page by page (a ``(Z, 512)`` window).
3. **Page pass 2** frees the migrated sources below the stop, fills the first ``K``
   targets from the top, and writes intact folios at their destinations.

Counters are exact prefix sums of per-pageblock totals plus the window's partial sums.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from kernels.backend import array_namespace
from kernels.bits import (
    lowest_bit,
    popcount,
    repeat_index,
    select_bit,
    set_bit_positions,
)
from kernels.zone import (
    COMPACT_CLUSTER_MAX,
    FREE,
    MOVABLE,
    PAGEBLOCK_NR_PAGES,
    PINNED,
    KernelProfile,
    MigrateType,
    ZoneState,
)

P = PAGEBLOCK_NR_PAGES
WORDS64 = P // 64  # uint64 words per pageblock
WIN32 = P // 32  # 32-page lock windows per pageblock
_ALL32 = 0xFFFFFFFF
_MAX_CALLS_V4 = P // COMPACT_CLUSTER_MAX + 1  # 16 full batches and a tail


@dataclasses.dataclass(frozen=True, slots=True)
class CompactParams:
    """Parameters of a whole-zone compaction batch."""

    profile: KernelProfile  # static: the batch's kernel behaviour profile
    skip_pinned: Any  # (Z,) bool; reject pinned anon pages before isolation (seed 003)


@dataclasses.dataclass(frozen=True, slots=True)
class CompactCounters:
    """/proc/vmstat deltas of one compact_zone() run per zone, in pages."""

    compact_migrate_scanned: Any  # (Z,) int64; COMPACTMIGRATE_SCANNED
    compact_free_scanned: Any  # (Z,) int64; COMPACTFREE_SCANNED
    compact_isolated: Any  # (Z,) int64; COMPACTISOLATED (both scanners)
    pgmigrate_success: Any  # (Z,) int64; PGMIGRATE_SUCCESS
    pgmigrate_fail: Any  # (Z,) int64; PGMIGRATE_FAIL
    lru_lock_acquisitions: Any  # (Z,) int64; LRU-lock takes in isolate_migratepages_block()
    migrate_folio_split: Any  # (Z,) int64; folios split for lack of an aligned target run


def compaction_cost(counters: CompactCounters) -> Any:
    """mmtests "Compaction cost" of the counters (kernel-model.md 7), per zone.

    ``(7 * migrate_scanned + 19 * isolated + 1038 * pgmigrate_success + 14 *
    pgmigrate_fail) / 1e6``: mmtests reads the free-scanner term from the misspelt
    key ``compact_migrate_free``, which never exists, so free scanning costs nothing.
    """
    return (
        7 * counters.compact_migrate_scanned
        + 19 * counters.compact_isolated
        + 1038 * counters.pgmigrate_success
        + 14 * counters.pgmigrate_fail
    ) / 1e6


_CHUNK = 1 << 20  # pages per page-pass chunk on NumPy: temporaries stay in cache


def _chunks(xp: Any, total: int) -> list[tuple[int, int]]:
    """Chunk bounds over a flat page axis (one chunk on a GPU)."""
    step = total if xp.__name__ != "numpy" else _CHUNK
    return [(lo, min(lo + step, total)) for lo in range(0, total, step)]


def _planes(xp: Any, s: Any, v6: bool, skip_pinned: Any) -> dict[str, Any]:
    """Page pass 1: per-page predicates packed into bit planes of (Z, N // 8) bytes.

    Planes: ``free``; ``suc`` (every page of a unit that migrates: base movable pages
    and, in 6.19, folios below pageblock_order; 4.12 never isolates compound pages, and
    order-9 THPs are never isolated, skip_isolation_on_order()); ``head`` (unit heads
    among them); ``folio`` (6.19: folio heads among them); ``pin``; ``tail`` (4.12).
    Per-zone policy is applied on the packed planes: ``pin_iso`` (pinned pages that get
    isolated: skip_pinned off), ``drop`` (6.19, skip_pinned on: isolate_fail_put drops the
    LRU lock) and ``iso_head`` (heads of every isolated unit).
    """
    z_n, n = s.shape
    flat = s.reshape(-1)
    names = ["free", "suc", "pin"] + (["head", "folio"] if v6 else ["tail"])
    out = {k: xp.empty(z_n * n // 8, dtype=xp.uint8) for k in names}
    for lo, hi in _chunks(xp, z_n * n):
        c = flat[lo:hi]
        sl = slice(lo // 8, hi // 8)
        out["free"][sl] = xp.packbits(c == FREE, bitorder="little")
        out["pin"][sl] = xp.packbits(c == PINNED, bitorder="little")
        if v6:
            suc = ((c & 0x07) == MOVABLE) & ((c & 0x7F) < (MOVABLE | (9 << 3)))
            head = suc & (c < 0x80)
            out["suc"][sl] = xp.packbits(suc, bitorder="little")
            out["head"][sl] = xp.packbits(head, bitorder="little")
            out["folio"][sl] = xp.packbits(head & (c != MOVABLE), bitorder="little")
        else:
            out["suc"][sl] = xp.packbits(c == MOVABLE, bitorder="little")
            out["tail"][sl] = xp.packbits(c >= 0x80, bitorder="little")
    pl = {k: v.reshape(z_n, n // 8) for k, v in out.items()}
    keep = xp.where(skip_pinned, 0, 0xFF).astype(xp.uint8)[:, None]
    pl["pin_iso"] = pl["pin"] & keep
    pl["iso_head"] = (pl["head"] if v6 else pl["suc"]) | pl["pin_iso"]
    if v6:
        pl["drop"] = pl["pin"] & ~keep
    return pl


def _per_block(xp: Any, packed: Any, nr_blocks: int) -> Any:
    """Popcount of a packed plane per pageblock: (Z, N // 8) uint8 -> (Z, B) int64."""
    words = packed.view(xp.uint64).reshape(packed.shape[0], nr_blocks, WORDS64)
    return popcount(xp, words).astype(xp.int64).sum(axis=2)


def _aligned_free_groups(xp: Any, free_words: Any) -> Any:
    """Per pageblock, the number of free page heads of the buddy decomposition.

    A free run decomposes into maximal aligned blocks, and for the counts
    ``A_k`` of entirely free aligned 2**k groups the number of block heads is
    ``A_0 - sum_{k>=1} A_k`` (buddyinfo's count_k = A_k - 2 A_{k+1}, telescoped).
    ``free_words``: (Z, B, 8) uint64. Returns (Z, B) int64 for blocks that are not
    entirely free (fully free blocks are handled by the caller).
    """
    u64 = xp.uint64
    masks = (
        0x5555555555555555,
        0x1111111111111111,
        0x0101010101010101,
        0x0001000100010001,
        0x0000000100000001,
        0x1,
    )
    f = free_words
    total = popcount(xp, f).astype(xp.int64).sum(axis=2)
    for k, m in enumerate(masks):
        f = f & (f >> u64(1 << k)) & u64(m)
        total = total - popcount(xp, f).astype(xp.int64).sum(axis=2)
    full = free_words == u64(0xFFFFFFFFFFFFFFFF)  # order-6 groups fully free per word
    pairs = full[..., 0::2] & full[..., 1::2]  # order 7
    quads = pairs[..., 0::2] & pairs[..., 1::2]  # order 8
    total = total - pairs.sum(axis=2) - quads.sum(axis=2)
    return total


def _lock_runs_v6(xp: Any, iso32: Any, drop32: Any) -> Any:
    """Per 32-page window, LRU-lock acquisitions ignoring batch boundaries (6.19).

    The lock is dropped at every 32-aligned PFN and, in 6.19, at each pinned page
    rejected through isolate_fail_put. An isolated unit takes the lock iff no isolated
    unit lies between it and the last drop. Bit-parallel: injecting a carry at every
    drop (and at the window start) into the non-isolated bits makes it stop at the
    first isolated bit after each drop.
    """
    u64 = xp.uint64
    i = iso32.astype(u64)
    d = drop32.astype(u64)
    first = ((~i & u64(_ALL32)) + d + u64(1)) & i
    return popcount(xp, first).astype(xp.int64)


def _window_prefix(xp: Any, values: Any, x: Any) -> Any:
    """sum(values[z, :x[z, c]]) for a (Z, P) window and (Z, C) cut points."""
    z = values.shape[0]
    c = xp.concatenate(
        [xp.zeros((z, 1), dtype=xp.int64), xp.cumsum(values.astype(xp.int64), axis=1)], axis=1
    )
    return xp.take_along_axis(c, x.astype(xp.int64), axis=1)


def compact_node(state: ZoneState, params: CompactParams) -> tuple[ZoneState, CompactCounters]:
    """Compact every zone of the batch as compact_node() does, exactly like the reference.

    Mirrors compact_zone() (order -1, MIGRATE_SYNC, whole_zone, ignore_skip_hint),
    mm/compaction.c. Returns the new state (watermarks unchanged) and the counters.
    """
    s = state.page_state
    xp = array_namespace(s)
    v6 = params.profile == KernelProfile.V6_19
    z_n, n = s.shape
    b_n = n // P
    i64 = xp.int64
    skip_pinned = xp.asarray(params.skip_pinned, dtype=bool).reshape(z_n)

    # ---- page pass 1 -------------------------------------------------------------
    pl = _planes(xp, s, v6, skip_pinned)
    n_free = _per_block(xp, pl["free"], b_n)
    n_suc = _per_block(xp, pl["suc"], b_n)
    n_pin = _per_block(xp, pl["pin_iso"], b_n)
    free_words = pl["free"].view(xp.uint64).reshape(z_n, b_n, WORDS64)

    # ---- pageblock level -----------------------------------------------------------
    fully_free = n_free == P
    bidx = xp.arange(b_n)
    buddy_idx = bidx ^ 1
    pair = fully_free & xp.where(
        buddy_idx < b_n, fully_free[:, xp.minimum(buddy_idx, b_n - 1)], False
    )
    pair_even = pair & (bidx % 2 == 0)
    pair_odd = pair & (bidx % 2 == 1)
    mt = state.pageblock_migratetype
    movable_type = (mt == MigrateType.MOVABLE) | (mt == MigrateType.CMA)
    # suitable_migration_target(): a block whose first page heads a free buddy of order
    # >= pageblock_order is not a target; the upper half of an order-10 block is
    # scanned but yields nothing (its pages are buddy tails).
    scan_elig = movable_type & (~fully_free | pair_odd)
    tgt_block = movable_type & ~fully_free
    n_tgt = xp.where(tgt_block, n_free, 0)
    last_free = (free_words[:, :, WORDS64 - 1] >> xp.uint64(63)).astype(bool)

    if v6:
        n_tail = None
        mig_full = P + P * pair_even.astype(i64)
        free_full = xp.where(scan_elig, P, 0).astype(i64)
    else:
        n_tail = _per_block(xp, pl["tail"], b_n)
        heads = (P - n_free - n_tail) + _aligned_free_groups(xp, free_words)
        mig_full = xp.where(fully_free, xp.where(pair_odd, P, 1), heads).astype(i64)
        free_full = xp.where(scan_elig, P - n_tail, 0).astype(i64)

    n_iso = n_suc + n_pin

    def excl(a: Any) -> Any:  # exclusive prefix over blocks, (Z, B + 1)
        return xp.concatenate(
            [xp.zeros((z_n, 1), dtype=i64), xp.cumsum(a.astype(i64), axis=1)], axis=1
        )

    k_suc, k_iso, k_pin = excl(n_suc), excl(n_iso), excl(n_pin)
    mig_scanned = excl(mig_full)
    # G[m] = targets in pageblocks above m, for m = 0..B (G[B-1] = G[B] = 0).
    g_incl = xp.cumsum(n_tgt[:, ::-1], axis=1)[:, ::-1]  # targets in blocks >= m
    g = xp.concatenate([g_incl[:, 1:], xp.zeros((z_n, 2), dtype=i64)], axis=1)
    e_incl = xp.cumsum(free_full[:, ::-1], axis=1)[:, ::-1]
    e_free = xp.concatenate([e_incl, xp.zeros((z_n, 2), dtype=i64)], axis=1)  # E(m), m = 0..B+1
    x_last = xp.concatenate(
        [(tgt_block & last_free).astype(i64), xp.zeros((z_n, 1), dtype=i64)], axis=1
    )
    cap = g[:, :b_n] - x_last[:, 1:]
    cap[:, b_n - 1] = -1

    unsafe = k_suc[:, 1:] > xp.minimum(cap, g[:, 1 : b_n + 1])
    b0 = xp.argmax(unsafe, axis=1)  # the last block is always unsafe
    # LRU-lock takes of the pageblocks scanned in full: only those below some zone's b0.
    nb = int(b0.max()) + 1
    lock_acq = excl(_lock_acquisitions_full(xp, pl, v6, z_n, nb, s))

    # ---- the stop window: pageblock b0 of every zone, page by page ------------------
    z1 = xp.arange(z_n)
    row = s.reshape(z_n, b_n, P)[z1, b0]  # (Z, P) uint8
    w = _Window(xp, row, v6, skip_pinned, pl, z1, b0, b_n)
    cap_b0 = cap[z1, b0]
    ksuc_b0 = k_suc[z1, b0]
    k_e1 = ksuc_b0[:, None] + _window_prefix(xp, w.suc_n, w.starts)
    e1_fail = w.valid & (k_e1 > cap_b0[:, None])
    mi_call = b0[:, None] + (w.ends == P)
    g_mi_call = g[z1[:, None], mi_call]
    g_mi_page = xp.take_along_axis(g_mi_call, w.call_of, axis=1)
    e2_fail = w.suc_head & (ksuc_b0[:, None] + w.suc_before + w.size > g_mi_page)
    big = 4 * P
    key_e1 = xp.where(e1_fail, 2 * w.starts, big).min(axis=1)
    key_e2 = xp.where(e2_fail, 2 * xp.arange(P)[None, :] + 1, big).min(axis=1)
    case_a = key_e1 < key_e2  # a scanners-met check fails inside b0
    case_b = key_e2 < key_e1  # a target request fails inside b0
    # otherwise: the scanners-met check at the start of b0 + 1 fails
    c_a = xp.argmax(e1_fail, axis=1)
    u_b = xp.minimum(key_e2 // 2, P - 1)
    c_b = w.call_of[z1, u_b]
    x_a = w.starts[z1, c_a]
    x_b = w.ends[z1, c_b]
    x_cut = xp.where(case_a, x_a, xp.where(case_b, x_b, P))  # end of migrate scanning in b0
    partial = lambda v: _window_prefix(xp, v, x_cut[:, None])[:, 0]  # noqa: E731
    full_b0 = mig_full[z1, b0]
    in_b0_scanned = xp.where(x_cut == P, full_b0, partial(w.mw))
    migrate_scanned = mig_scanned[z1, b0] + in_b0_scanned
    isolated_mig = k_iso[z1, b0] + partial(w.iso_n)
    lru = lock_acq[z1, b0] + partial(w.acq)
    suc_b = ksuc_b0 + w.suc_before[z1, u_b]
    nr_moved = xp.where(case_a, k_e1[z1, c_a], xp.where(case_b, suc_b, k_suc[z1, b0 + 1]))
    fail = xp.where(
        case_b,
        k_pin[z1, b0] + w.pin_before[z1, u_b] + w.size[z1, u_b],
        k_pin[z1, b0] + partial(w.pin_n),
    )
    src_end = b0 * P + xp.where(case_a, x_a, xp.where(case_b, u_b, P))

    # ---- free scanner -------------------------------------------------------------
    targets = _TargetIndex(xp, free_words, tgt_block)
    t_last = targets.pfn(z1, xp.maximum(nr_moved - 1, 0))
    bt = t_last // P
    if v6:
        part = t_last - bt * P + 1
    else:
        tail_words = pl["tail"].view(xp.uint64).reshape(z_n, b_n, WORDS64)[z1, bt]
        part = t_last - bt * P + 1 - _count_below(xp, tail_words, t_last - bt * P + 1)
    frontier = xp.where(nr_moved > 0, e_free[z1, bt + 1] + part, 0)
    mi_b = b0 + (x_b == P)
    free_scanned = xp.where(case_b, xp.maximum(frontier, e_free[z1, mi_b + 1]), frontier)
    partial_free = xp.where(case_b, xp.maximum(g[z1, mi_b] - nr_moved, 0), 0)

    # ---- page pass 2 -------------------------------------------------------------
    new_s, n_split = _apply(
        xp, s, pl, tgt_block, targets, free_words, nr_moved, src_end, t_last, v6
    )

    counters = CompactCounters(
        compact_migrate_scanned=migrate_scanned.astype(i64),
        compact_free_scanned=free_scanned.astype(i64),
        compact_isolated=(isolated_mig + nr_moved + partial_free).astype(i64),
        pgmigrate_success=nr_moved.astype(i64),
        pgmigrate_fail=fail.astype(i64),
        lru_lock_acquisitions=lru.astype(i64),
        migrate_folio_split=n_split.astype(i64),
    )
    return dataclasses.replace(state, page_state=new_s), counters


def _count_below(xp: Any, words: Any, nbits: Any) -> Any:
    """Set bits among the first ``nbits`` bits of each row of (Z, 8) uint64 words."""
    pos = xp.arange(WORDS64)[None, :] * 64
    take = xp.clip(nbits[:, None] - pos, 0, 64)
    mask = xp.where(
        take >= 64,
        xp.uint64(0xFFFFFFFFFFFFFFFF),
        (xp.uint64(1) << xp.minimum(take, 63).astype(xp.uint64)) - xp.uint64(1),
    )
    return popcount(xp, words & mask).astype(xp.int64).sum(axis=1)


class _TargetIndex:
    """Maps target numbers to PFNs: target k is the k-th (0-based) free page of the
    target pageblocks in the free scanner's order (pageblocks from the top down, PFNs
    ascending inside a pageblock). One searchsorted over per-word start ranks finds
    the 64-page word; a bytewise select finds the page."""

    def __init__(self, xp: Any, free_words: Any, tgt_block: Any):
        z_n, b_n, _ = free_words.shape
        counts = popcount(xp, free_words).astype(xp.int64) * tgt_block[..., None]
        seq = counts[:, ::-1, :].reshape(z_n, b_n * WORDS64)  # scan order of words
        self.start = xp.cumsum(seq, axis=1) - seq  # first target number in each word
        self.span = b_n * WORDS64 * 64 + 1
        self.key = (self.start + xp.arange(z_n, dtype=xp.int64)[:, None] * self.span).reshape(-1)
        self.free_words = free_words
        self.xp = xp

    def pfn(self, zone: Any, k: Any) -> Any:
        """PFN of target number ``k`` of zone ``zone`` (flat arrays; targets must exist)."""
        xp = self.xp
        z_n, b_n, _ = self.free_words.shape
        n_words = b_n * WORDS64
        pos = xp.searchsorted(self.key, zone * self.span + k, side="right") - 1
        w = xp.clip(pos - zone * n_words, 0, n_words - 1)  # last word starting at or before k
        block = b_n - 1 - w // WORDS64
        wi = w % WORDS64
        j = k - self.start[zone, w]
        return (
            block * P
            + wi * 64
            + select_bit(xp, self.free_words[zone, block, wi], xp.clip(j, 0, 63))
        )


def _cut_plane(xp: Any, packed: Any, lo: Any, hi: Any) -> Any:
    """Keep the bits of a packed plane with lo <= pfn < hi (per zone); clear the rest.

    Pageblocks entirely inside the range keep all their bytes; the (at most two)
    pageblocks holding ``lo`` and ``hi`` get an exact per-bit mask.
    """
    z_n, nbytes = packed.shape
    b_n = nbytes * 8 // P
    bidx = xp.arange(b_n, dtype=xp.int64)[None, :]
    inside = (bidx >= ((lo + P - 1) // P)[:, None]) & (bidx < (hi // P)[:, None])
    mask = xp.repeat(xp.where(inside, 0xFF, 0).astype(xp.uint8), P // 8, axis=1)
    zi = xp.arange(z_n)[:, None]
    byte_off = xp.arange(P // 8, dtype=xp.int64)[None, :]
    for blk in (lo // P, hi // P):  # the partial pageblocks
        blk = xp.minimum(blk, b_n - 1)
        first = blk[:, None] * P + byte_off * 8  # first PFN of each byte of the block
        lo_c = (lo[:, None] - first).clip(0, 8)
        hi_c = (hi[:, None] - first).clip(0, 8)
        bits = (xp.left_shift(1, hi_c) - xp.left_shift(1, lo_c)).clip(0, 255).astype(xp.uint8)
        mask[zi, blk[:, None] * (P // 8) + byte_off] = bits
    return packed & mask


def _apply(xp, s, pl, tgt_block, targets, free_words, nr_moved, src_end, t_last, v6):
    """Page pass 2: move the first ``nr_moved`` source pages to the first targets.

    Sources: every page of a migrating unit below ``src_end`` becomes FREE. Targets: the
    free pages of target pageblocks above ``bt`` and those up to ``t_last`` in ``bt``
    become MOVABLE base pages; then each moved folio whose targets form one aligned run
    is written there whole (head and tail codes), the others stay split.
    """
    z_n, n = s.shape
    b_n = n // P
    zero = xp.zeros(z_n, dtype=xp.int64)
    src = _cut_plane(xp, pl["suc"], zero, src_end)
    bt = t_last // P
    keep = tgt_block & (xp.arange(b_n)[None, :] > bt[:, None])
    tgt = pl["free"] & xp.repeat(xp.where(keep, 0xFF, 0).astype(xp.uint8), P // 8, axis=1)
    has = nr_moved > 0
    tgt |= _cut_plane(
        xp, pl["free"], xp.where(has, bt * P, 0), xp.where(has, t_last + 1, 0)
    ) & xp.repeat(xp.where(tgt_block, 0xFF, 0).astype(xp.uint8), P // 8, axis=1)
    new_s = xp.empty_like(s)
    src_flat, tgt_flat, s_flat, out_flat = (
        src.reshape(-1),
        tgt.reshape(-1),
        s.reshape(-1),
        new_s.reshape(-1),
    )
    for lo, hi in _chunks(xp, z_n * n):
        sl = slice(lo // 8, hi // 8)
        moved = xp.unpackbits(src_flat[sl], bitorder="little")
        filled = xp.unpackbits(tgt_flat[sl], bitorder="little")
        out_flat[lo:hi] = (s_flat[lo:hi] * (1 - moved)) | filled  # FREE == 0, MOVABLE == 1
    n_split = xp.zeros(z_n, dtype=xp.int64)
    if not v6:
        return new_s, n_split
    # Moved folio heads.
    zf, hf = set_bit_positions(xp, pl["folio"] & src)
    if zf.size == 0:
        return new_s, n_split
    order = ((s[zf, hf] >> 3) & 0x0F).astype(xp.int64)
    size = xp.left_shift(xp.int64(1), order)
    # Its target number = migrating pages before it (sources move in PFN order).
    suc_words = pl["suc"].view(xp.uint64)
    suc_start = xp.cumsum(popcount(xp, suc_words).astype(xp.int64), axis=1)
    hw = hf // 64
    below = xp.left_shift(xp.uint64(1), (hf % 64).astype(xp.uint64)) - xp.uint64(1)
    rank = xp.where(hw > 0, suc_start[zf, xp.maximum(hw - 1, 0)], 0) + popcount(
        xp, suc_words[zf, hw] & below
    ).astype(xp.int64)
    t_first = targets.pfn(zf, rank)
    # The folio's targets are the next ``size`` free pages from t_first in its target
    # block, so they form one aligned run iff t_first is aligned and the run is free.
    intact = (t_first % size == 0) & _run_free(xp, free_words, zf, t_first, size)
    n_split = xp.bincount(zf[~intact], minlength=z_n).astype(xp.int64)
    ok_z, ok_t, ok_h, ok_n = zf[intact], t_first[intact], hf[intact], size[intact]
    if ok_z.size:
        rep, within = repeat_index(xp, ok_n)
        zz = ok_z[rep]
        new_s[zz, ok_t[rep] + within] = s[zz, ok_h[rep] + within]
    return new_s, n_split


def _run_free(xp: Any, free_words: Any, zone: Any, start: Any, size: Any) -> Any:
    """Whether the aligned run [start, start + size) (size <= 256) is entirely free."""
    b_n = free_words.shape[1]
    flat = free_words.reshape(free_words.shape[0], b_n * WORDS64)
    w0 = start // 64
    ok = xp.ones(start.shape, dtype=bool)
    n_words = xp.maximum(size // 64, 1)
    small = size < 64
    bits = xp.where(
        small,
        xp.left_shift(xp.uint64(1), size.astype(xp.uint64) % xp.uint64(64)) - xp.uint64(1),
        xp.uint64(0),
    )
    for i in range(4):
        idx = xp.minimum(w0 + i, b_n * WORDS64 - 1)
        word = flat[zone, idx]
        part = (word >> (start % 64).astype(xp.uint64)) & bits
        good = xp.where(small, part == bits, word == xp.uint64(0xFFFFFFFFFFFFFFFF))
        ok &= good | (i >= n_words)
    return ok


def _running_max(xp: Any, a: Any) -> Any:
    """Running maximum along axis 1 (Hillis-Steele doubling; portable to CuPy)."""
    out = a
    step = 1
    while step < a.shape[1]:
        shifted = xp.concatenate(
            [xp.full((a.shape[0], step), -1, dtype=a.dtype), out[:, :-step]], axis=1
        )
        out = xp.maximum(out, shifted)
        step *= 2
    return out


class _Window:
    """Page-level view of pageblock b0 of every zone: units, batches, lock takes."""

    def __init__(self, xp, row, v6, skip_pinned, pl, z1, b0, b_n):
        z_n = row.shape[0]
        off = xp.arange(P)[None, :]
        free = row == FREE
        # Buddy decomposition inside the block: the order of the largest aligned
        # entirely free group holding each page.
        ordmax = xp.full(row.shape, -1, dtype=xp.int64)
        for o in range(10):
            grp = free.reshape(z_n, P >> o, 1 << o).all(axis=2)
            ordmax = xp.where(xp.repeat(grp, 1 << o, axis=1), o, ordmax)
        free_head = free & ((off & ((xp.int64(1) << xp.maximum(ordmax, 0)) - 1)) == 0)
        tail = row >= 0x80
        order = ((row >> 3) & 0x0F).astype(xp.int64)
        nonfree_head = ~free & ~tail
        if v6:
            self.mw = xp.where(
                free_head,
                xp.int64(1) << xp.maximum(ordmax, 0),
                xp.where(nonfree_head, xp.int64(1) << order, 0),
            )
        else:
            self.mw = (free_head | nonfree_head).astype(xp.int64)
        sp = skip_pinned[:, None]
        pin = row == PINNED
        suc = xp.unpackbits(
            pl["suc"].reshape(z_n, b_n, P // 8)[z1, b0], axis=-1, bitorder="little"
        ).astype(bool)
        self.suc_head = suc & ~tail
        pin_iso = pin & ~sp
        iso_head = self.suc_head | pin_iso
        self.size = xp.where(self.suc_head, xp.int64(1) << order, xp.where(pin_iso, 1, 0)).astype(
            xp.int64
        )
        self.iso_n = xp.where(iso_head, self.size, 0)
        self.suc_n = xp.where(self.suc_head, self.size, 0)
        self.pin_n = pin_iso.astype(xp.int64)
        ci = xp.cumsum(self.iso_n, axis=1)
        self.suc_before = xp.cumsum(self.suc_n, axis=1) - self.suc_n
        self.pin_before = xp.cumsum(self.pin_n, axis=1) - self.pin_n
        n_iso = ci[:, -1]
        # isolate_migratepages() calls (batches) inside the block: their end PFNs.
        if v6:
            crossing = iso_head & (ci >= COMPACT_CLUSTER_MAX)
            has = crossing.any(axis=1)
            u = xp.argmax(crossing, axis=1)
            e0 = xp.where(has, u + self.size[z1, u], P)
            ends = xp.stack([e0, xp.full(z_n, P, dtype=xp.int64)], axis=1)
            ncalls = 1 + (e0 < P)
            self.call_of = (ci - self.iso_n >= COMPACT_CLUSTER_MAX).astype(xp.int64)
        else:
            cmax = _MAX_CALLS_V4
            is_end = iso_head & (ci % COMPACT_CLUSTER_MAX == 0)
            ends = xp.full((z_n, cmax), P, dtype=xp.int64)
            ez, ep = xp.nonzero(is_end)
            ends[ez, ci[ez, ep] // COMPACT_CLUSTER_MAX - 1] = ep + 1
            nf = n_iso // COMPACT_CLUSTER_MAX
            partial = n_iso % COMPACT_CLUSTER_MAX != 0
            last_full_end = ends[z1, xp.maximum(nf - 1, 0)]
            need_tail = ~partial & ((nf == 0) | (last_full_end < P))
            ncalls = nf + (partial | need_tail)
            self.call_of = xp.maximum(ci - 1, 0) // COMPACT_CLUSTER_MAX
        self.ends = ends
        self.starts = xp.concatenate([xp.zeros((z_n, 1), dtype=xp.int64), ends[:, :-1]], axis=1)
        self.valid = xp.arange(ends.shape[1])[None, :] < ncalls[:, None]
        # LRU-lock takes: an isolated unit takes the lock unless an isolated unit lies
        # between it and the last drop (32-aligned PFN, batch start, 6.19 pinned skip).
        idx = xp.broadcast_to(off, row.shape)
        reset = (off % COMPACT_CLUSTER_MAX == 0) | xp.zeros(row.shape, dtype=bool)
        starts_valid = xp.where(self.valid, self.starts, P)
        sz = xp.nonzero(starts_valid < P)
        reset_at = xp.zeros((z_n, P + 1), dtype=bool)
        reset_at[sz[0], starts_valid[sz]] = True
        reset = reset | reset_at[:, :P]
        if v6:
            reset = reset | (pin & sp)
        last_reset = _running_max(xp, xp.where(reset, idx, -1))
        last_iso = _running_max(xp, xp.where(iso_head, idx, -1))
        last_iso_before = xp.concatenate(
            [xp.full((z_n, 1), -1, dtype=last_iso.dtype), last_iso[:, :-1]], axis=1
        )
        self.acq = (iso_head & (last_iso_before < last_reset)).astype(xp.int64)


def _lock_acquisitions_full(xp, pl, v6, z_n, b_n, s):
    """LRU-lock acquisitions of each of the first ``b_n`` pageblocks scanned in full."""
    i64 = xp.int64
    pl = {k: v[:, : b_n * P // 8] for k, v in pl.items()}
    s = s[:, : b_n * P]
    iso32 = pl["iso_head"].view(xp.uint32).reshape(z_n, b_n, WIN32)
    pop_w = popcount(xp, iso32).astype(i64)  # isolated unit heads per window
    if not v6:
        # 4.12: units are base pages; the lock is taken at the first isolated page of
        # every window, and again after every 32-page batch boundary that falls inside
        # a window with more isolated pages after it.
        cum = xp.cumsum(pop_w, axis=2)
        before = cum - pop_w
        extra = (cum - 1) // COMPACT_CLUSTER_MAX - before // COMPACT_CLUSTER_MAX
        extra = xp.where(pop_w > 0, extra, 0)
        return ((pop_w > 0).astype(i64) + extra).sum(axis=2)
    drop32 = pl["drop"].view(xp.uint32).reshape(z_n, b_n, WIN32)
    runs = _lock_runs_v6(xp, iso32, drop32).sum(axis=2)
    # One batch boundary per block at most: after the unit holding the 32nd isolated
    # page, when the block has more than that. It costs one more take if the next
    # isolated unit is in the same window with no drop in between.
    isopage = (pl["suc"] | pl["pin_iso"]).view(xp.uint32).reshape(z_n, b_n, WIN32)
    pp = popcount(xp, isopage).astype(i64)
    cum = xp.cumsum(pp, axis=2)
    has = cum[:, :, -1] >= COMPACT_CLUSTER_MAX
    wstar = (cum < COMPACT_CLUSTER_MAX).sum(axis=2)
    wstar_c = xp.minimum(wstar, WIN32 - 1)
    before = xp.where(
        wstar_c > 0,
        xp.take_along_axis(cum, xp.maximum(wstar_c - 1, 0)[..., None], axis=2)[..., 0],
        0,
    )
    word = xp.take_along_axis(isopage, wstar_c[..., None], axis=2)[..., 0]
    bit = select_bit(xp, word, xp.clip(COMPACT_CLUSTER_MAX - 1 - before, 0, 31))
    p32 = wstar_c * 32 + bit  # offset of the 32nd isolated page in the block
    blocks = s.reshape(z_n, b_n, P)
    code = xp.take_along_axis(blocks, xp.clip(p32, 0, P - 1)[..., None], axis=2)[..., 0]
    size = xp.int64(1) << ((code >> 3) & 0x0F).astype(i64)
    cs = (p32 | (size - 1)) + 1  # start of the second batch
    off = cs % 32
    iw = xp.take_along_axis(iso32, wstar_c[..., None], axis=2)[..., 0].astype(xp.uint64)
    dw = xp.take_along_axis(drop32, wstar_c[..., None], axis=2)[..., 0].astype(xp.uint64)
    shift = off.astype(xp.uint64)
    nxt = lowest_bit(xp, iw >> shift)
    below_next = xp.where(
        nxt >= 64,
        xp.uint64(0),
        (xp.uint64(1) << xp.minimum(nxt, 63).astype(xp.uint64)) - xp.uint64(1),
    )
    no_drop = ((dw >> shift) & below_next) == 0
    extra = has & (cs < P) & (off != 0) & (nxt < 32) & no_drop
    return runs + extra.astype(i64)
