"""CMA pageblocks and contiguous-allocation trials for the tick engine (tick-model.md 7).

Two parts, both called from :mod:`kernels.tick` at a few clearly marked places:

* MIGRATE_CMA in the page allocator (tick-model.md 7.1): the area layout check, the
  CMA-first and ``__rmqueue_cma_fallback`` steps of ``__rmqueue`` (mm/page_alloc.c),
  ``__zone_watermark_ok`` without ALLOC_CMA, and the bulk rounds' lists (7.6). With no CMA
  pageblock in the batch none of this runs (``_Engine.has_cma``), so existing programs
  are bit-identical.
* The trials (tick-model.md 7.3-7.4): ``alloc_contig_range`` (mm/page_alloc.c, KM 8.1),
  ``cma_alloc`` (mm/cma.c, KM 8.2) and Minchan Kim's 2020 ``alloc_pages_bulk`` RFC
  (KM 8.3). The oracle is ``tests/reference/contig.py``.

The zones' trials run in lockstep (tick-model.md 7.5): each zone's trial is a generator
(array code inside the zone) that yields whenever it needs migration targets, and the
targets of all waiting zones come from one :func:`bulk_targets` call (the engine's
``_bulk_round``), which equals one ``get_page`` per target.

Layer rule: array code only (NumPy/CuPy through ``xp``); imports kernels modules only.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

from kernels.backend import Array, to_numpy
from kernels.program import (
    ANON,
    CONFIG_CMA_ALIGNMENT,
    CONTIG_BULK,
    CONTIG_BULK_RANGE,
    CONTIG_CMA_ORDER,
    CONTIG_CMA_ORDER10,
    CONTIG_CMA_RANGE,
    COUNTER_INDEX,
    FILE,
    FREE,
    HELD,
    ISOFREE,
    MT_CMA,
    PIN,
    RECL,
    STREAM_BUSY,
    TRIAL_FIELDS,
    UNMOV,
    Phase,
)
from kernels.rng import hash_u64

P = 512
CH = 1024  # MAX_ORDER_NR_PAGES: the isolation granule (pfn_max_align_down/up)
BATCH = 32  # COMPACT_CLUSTER_MAX: pages isolate_migratepages_range() isolates per batch
MT_M = 1
OK, EBUSY, ENOMEM = 0, -16, -12
_T = {name: i for i, name in enumerate(TRIAL_FIELDS)}

# --------------------------------------------------------------------------- 7.1 CMA


def cma_pages(xp: Any, bmt: Array) -> Array:
    """Pages of each zone's CMA area; checks the layout (tick-model.md 7.1).

    MIGRATE_CMA pageblocks must form one area at the top of the zone in whole 1024-page
    chunks (CMA's MAX_ORDER alignment), so that no buddy spans CMA and other pages.
    """
    b = bmt.shape[1]
    allowed = (bmt == 0) | (bmt == 1) | (bmt == 2) | (bmt == MT_CMA)
    if not bool(allowed.all()):
        raise ValueError("block_mt must be UNMOVABLE, MOVABLE, RECLAIMABLE or CMA (4)")
    cma = bmt == MT_CMA
    n = cma.sum(axis=1).astype(xp.int64)
    top = xp.arange(b, dtype=xp.int64)[None, :] >= (b - n)[:, None]
    if not bool(((top == cma).all(axis=1) & (n % 2 == 0)).all()):
        raise ValueError("CMA pageblocks must be one area at the top, in whole 1024-page chunks")
    return n * P


def cma_free(eng: Any, z: Array) -> Array:
    """NR_FREE_CMA_PAGES of rows z: the pages of the heads on the CMA lists."""
    return (eng.nrf[z, :, MT_CMA] << eng.ar11[None, :]).sum(axis=1)


def rmqueue_cma_first(eng: Any, z: Array, order: Array, mt: Array) -> Array:
    """6.19 __rmqueue: ALLOC_CMA and NR_FREE_CMA_PAGES > NR_FREE_PAGES / 2 -> CMA first."""
    xp = eng.xp
    h = xp.full(z.shape[0], -1, dtype=xp.int64)
    first = (mt == MT_M) & (cma_free(eng, z) > eng.nr_free[z] // 2)
    r = xp.nonzero(first)[0]
    if r.shape[0]:
        cma = xp.full(r.shape[0], MT_CMA, dtype=xp.int64)
        found, o = eng._smallest_order(z[r], order[r], cma)
        rr = r[found]
        if rr.shape[0]:
            h[rr] = eng._take(z[rr], o[found], cma[found], order[rr])
    rest = xp.nonzero(h < 0)[0]
    if rest.shape[0]:
        h[rest] = eng._rmqueue(z[rest], order[rest], mt[rest], cma_first=False)
    return h


def rmqueue_cma_fallback(
    eng: Any, z: Array, order: Array, mt: Array, h: Array, found: Array
) -> Array:
    """__rmqueue_cma_fallback: MOVABLE rows that found nothing take __rmqueue_smallest(CMA)."""
    xp = eng.xp
    r = xp.nonzero(~found & (mt == MT_M))[0]
    if r.shape[0] == 0:
        return found
    cma = xp.full(r.shape[0], MT_CMA, dtype=xp.int64)
    f2, o2 = eng._smallest_order(z[r], order[r], cma)
    rr = r[f2]
    found = found.copy()
    if rr.shape[0]:
        h[rr] = eng._take(z[rr], o2[f2], cma[f2], order[rr])
        found[rr] = True
    return found


def wmark_ok_cma(eng: Any, z: Array, order: Array, mark: Array, cma: Any) -> Array:
    """__zone_watermark_ok with ALLOC_CMA per row: without it the free CMA pages are
    subtracted and the CMA lists do not count for order > 0 (KM 3.2)."""
    xp = eng.xp
    cma = xp.broadcast_to(xp.asarray(cma, dtype=bool), z.shape)
    free = eng.nr_free[z] - ((xp.int64(1) << order) - 1)
    free = free - xp.where(cma, 0, cma_free(eng, z))
    nr = eng.nrf[z]
    tot = nr[:, :, 0] + nr[:, :, 1] + nr[:, :, 2] + xp.where(cma[:, None], nr[:, :, MT_CMA], 0)
    high = ((tot > 0) & (eng.ar11[None, :] >= order[:, None])).any(axis=1)
    return (free > mark) & ((order == 0) | high)


def bulk_round_cma(eng: Any, mt: Array, nr_j: Array, ok: Array) -> tuple[Array, Array]:
    """_bulk_round with CMA: ``mt`` is each event's list (:func:`background_lists`);
    events without ALLOC_CMA (UNMOVABLE, RECLAIMABLE) see NR_FREE - NR_FREE_CMA, where
    NR_FREE_CMA drops by one with each CMA take before them (tick-model.md 7.6)."""
    xp = eng.xp
    cf = cma_free(eng, xp.arange(eng.Z, dtype=xp.int64))[:, None]
    is_cma = (mt == MT_CMA).astype(xp.int64)
    cf_j = cf - (xp.cumsum(is_cma, axis=1) - is_cma)
    nr_w = nr_j - xp.where((mt != MT_M) & (mt != MT_CMA), cf_j, 0)
    ok = ok & (nr_w > eng.wmin[:, None])
    return ok, nr_w


def _cummin(xp: Any, a: Array) -> Array:
    """Running minimum along axis 1 (NumPy's accumulate; else a doubling scan)."""
    if xp is np:
        return np.minimum.accumulate(a, axis=1)
    a = a.copy()
    s = 1
    while s < a.shape[1]:
        a[:, s:] = xp.minimum(a[:, s:], a[:, :-s].copy())
        s *= 2
    return a


def background_lists(eng: Any, mt: Array, start: Array) -> Array:
    """The list each background event of a _bulk_round takes from (tick-model.md 7.6):
    UNMOVABLE and RECLAIMABLE their own; MOVABLE events MOVABLE or CMA.

    v4_12: the k-th MOVABLE event takes CMA iff k >= m (the MOVABLE lists' pages; then
    __rmqueue_cma_fallback). v6_19: CMA iff NR_FREE_CMA > NR_FREE // 2 at the event, or
    m = 0. With c CMA pages and nr free pages at the start, MOVABLE event k at position p
    (every event takes one page) sees H_k = max(0, c - (nr - p) // 2) and takes CMA iff
    x_k < H_k, x_k its CMA takes before it; H is nondecreasing, so x_k = k + min(0,
    min_{i<k} (H_i - i - 1)), and event k takes CMA iff H_k - k - 1 >= min(0, min_{i<k}
    (H_i - i - 1)). Where the rule would take an empty MOVABLE list _bulk_round stops.
    """
    xp = eng.xp
    z_n, a_n = mt.shape
    c = cma_free(eng, xp.arange(z_n, dtype=xp.int64))
    m = (eng.nrf[:, :, MT_M] << eng.ar11[None, :]).sum(axis=1)
    jj = xp.arange(a_n, dtype=xp.int64)[None, :]
    mov = (jj >= start[:, None]) & (mt == MT_M)
    movi = mov.astype(xp.int64)
    k = xp.cumsum(movi, axis=1) - movi  # MOVABLE events before each event
    if eng.v6:
        p = jj - start[:, None]
        h = xp.maximum(0, c[:, None] - (eng.nr_free[:, None] - p) // 2)
        big = xp.int64(np.iinfo(np.int64).max)
        u = xp.where(mov, h - k - 1, big)
        prev = xp.minimum(_cummin(xp, u), 0)
        prev = xp.concatenate([xp.zeros((z_n, 1), dtype=xp.int64), prev[:, :-1]], axis=1)
        cma = mov & ((u >= prev) | (m[:, None] == 0))
    else:
        cma = mov & (k >= m[:, None])
    return xp.where(cma, MT_CMA, mt)


# --------------------------------------------------------------------------- 7.3 trials


class _Zone:
    """One zone's trial state: its row, CMA area, busy draw, bitmap and results."""

    def __init__(self, eng: Any, zi: int, index: int, busy_file: float) -> None:
        xp = eng.xp
        self.eng, self.xp, self.zi = eng, xp, zi
        self.z1 = xp.full(1, zi, dtype=xp.int64)
        self.ncma = int(eng.cma_pages[zi])
        self.base = eng.N - self.ncma
        self.res = [0] * len(TRIAL_FIELDS)
        self.mine = xp.zeros(eng.N, dtype=bool)  # pages this trial allocated
        self.bitmap = xp.zeros(max(self.ncma, 1), dtype=bool)
        thr = int(busy_file * 2.0**53)
        pfn = xp.arange(eng.N, dtype=xp.uint64)
        if thr:
            ctr = xp.uint64(index * eng.N) + pfn
            h = hash_u64(xp, eng.seed[zi], 0, STREAM_BUSY, ctr)
            self.draw = (h >> xp.uint64(11)) < xp.uint64(thr)
        else:
            self.draw = xp.zeros(eng.N, dtype=bool)

    def recount(self, lo: int, hi: int) -> None:
        """The per-pageblock FREE / FILE / ISOFREE counts of [lo, hi) from the kinds."""
        eng = self.eng
        k3 = eng.kind[self.zi, lo:hi].reshape(-1, P)
        b0, b1 = lo // P, hi // P
        eng.nfree_b[self.zi, b0:b1] = (k3 == FREE).sum(axis=1)
        eng.nfile_b[self.zi, b0:b1] = (k3 == FILE).sum(axis=1)
        eng.niso_b[self.zi, b0:b1] = (k3 == ISOFREE).sum(axis=1)

    def isolate(self, lo: int, hi: int) -> int:
        """start_isolate_page_range(lo, hi): -EBUSY on unmovable pages in a non-CMA block,
        else every free page of [lo, hi) leaves the allocator (ISOFREE)."""
        eng, xp, zi = self.eng, self.xp, self.zi
        k3 = eng.kind[zi, lo:hi].reshape(-1, P)
        unmov = ((k3 == UNMOV) | (k3 == RECL) | (k3 == HELD)).any(axis=1)
        if bool((unmov & (eng.bmt[zi, lo // P : hi // P] != MT_CMA)).any()):
            return EBUSY
        heads = xp.nonzero(eng.bo[zi, lo:hi] >= 0)[0].astype(xp.int64) + lo
        if heads.shape[0]:
            eng._del_heads(xp.full(heads.shape[0], zi, dtype=xp.int64), heads)
        seg = eng.kind[zi, lo:hi]
        fr = seg == FREE
        eng.nr_free[zi] -= int(fr.sum())
        eng.kind[zi, lo:hi] = xp.where(fr, ISOFREE, seg).astype(xp.uint8)
        self.recount(lo, hi)
        return OK

    def undo(self, lo: int, hi: int) -> None:
        """undo_isolate_page_range(): the ISOFREE pages freed, ascending __free_one_page."""
        self.free_mask(lo, hi, self.eng.kind[self.zi, lo:hi] == ISOFREE)

    def free_mask(self, lo: int, hi: int, mask: Array) -> None:
        eng, xp = self.eng, self.xp
        m = mask.reshape(-1, CH)
        rows = xp.nonzero(m.any(axis=1))[0]
        if rows.shape[0]:
            chunks = (lo // CH + rows).astype(xp.int64)
            eng._free_rows(xp.full(rows.shape[0], self.zi, dtype=xp.int64), chunks, m[rows])

    def migrate(self, start: int, end: int, best_effort: bool) -> Generator[int, int, int]:
        """__alloc_contig_migrate_range (tick-model.md 7.3).

        A generator: it yields the number of migration targets it needs (one per anon page,
        in order) and is sent how many the allocator gave before its first failure
        (:func:`bulk_targets`, for all zones of the batch at once, tick-model.md 7.5)."""
        eng, xp, zi = self.eng, self.xp, self.zi
        seg = eng.kind[zi, start:end]
        cand = xp.nonzero((seg == ANON) | (seg == FILE) | (seg == PIN))[0].astype(xp.int64)
        ck = seg[cand]
        busy = (ck == PIN) | ((ck == FILE) & self.draw[start:end][cand])
        nb = -(-cand.shape[0] // BATCH)
        last = nb - 1  # the last batch processed
        ret = OK
        if not best_effort and bool(busy.any()):
            last = int(xp.argmax(busy)) // BATCH
            ret = EBUSY
        upto = min(cand.shape[0], (last + 1) * BATCH)  # candidates of batches 0..last
        anon = xp.nonzero(ck[:upto] == ANON)[0]
        moved = 0
        stop = upto  # candidates before it are done (ENOMEM: the failing anon page)
        if anon.shape[0]:  # migrate_pages(): one target per page, in order
            moved = yield int(anon.shape[0])
            if moved < anon.shape[0]:
                stop = int(anon[moved])
                ret = ENOMEM
        done = cand[:stop]
        dk = ck[:stop]
        dbusy = busy[:stop]
        if ret == ENOMEM:  # the failing batch's clean page cache was dropped before migrating
            bend = min(cand.shape[0], (stop // BATCH + 1) * BATCH)
            rec = cand[:bend][(ck[:bend] == FILE) & ~busy[:bend]]
            self.res[_T["scanned"]] += int(cand[stop]) + 1
        else:
            rec = done[(dk == FILE) & ~dbusy]
            self.res[_T["scanned"]] += (
                end - start if ret == OK else int(cand[upto - 1]) + 1 if upto else 0
            )
        mig = done[dk == ANON]
        assert mig.shape[0] == moved
        kk = eng.kind[zi, start:end]
        kk[rec] = ISOFREE
        kk[mig] = ISOFREE
        eng.kind[zi, start:end] = kk
        self.recount(start & ~(P - 1), -(-end // P) * P)
        self.res[_T["reclaimed"]] += int(rec.shape[0])
        self.res[_T["migrated"]] += moved
        eng.cnt[zi, COUNTER_INDEX["pgmigrate_success"]] += moved
        eng.cnt[zi, COUNTER_INDEX["pgmigrate_fail"]] += int(dbusy.sum())
        return ret

    def take(self, lo: int, hi: int) -> None:
        """Pages [lo, hi) (all ISOFREE) become HELD: this trial's allocation."""
        eng = self.eng
        eng.kind[self.zi, lo:hi] = HELD
        self.mine[lo:hi] = True
        self.recount(lo & ~(P - 1), -(-hi // P) * P)

    def alloc_contig_range(self, start: int, end: int) -> Generator[int, int, int]:
        """alloc_contig_range(start, end): all or nothing (tick-model.md 7.3)."""
        lo, hi = start & ~(CH - 1), -(-end // CH) * CH
        self.res[_T["windows"]] += 1
        ret = self.isolate(lo, hi)
        if ret != OK:
            return ret
        ret = yield from self.migrate(start, end, best_effort=False)
        if ret == OK:
            if bool((self.eng.kind[self.zi, start:end] == ISOFREE).all()):
                self.take(start, end)
            else:
                ret = EBUSY
        self.undo(lo, hi)
        return ret

    def cma_alloc(self, count: int, align: int) -> Generator[int, int, bool]:
        """cma_alloc(count, align): sliding aligned windows (tick-model.md 7.3)."""
        xp = self.xp
        step = 1 << align
        cs = xp.concatenate([xp.zeros(1, dtype=xp.int64), xp.cumsum(self.bitmap, dtype=xp.int64)])
        start = 0
        while True:
            first = (start + step - 1) // step * step
            idx = xp.arange(first, self.ncma - count + 1, step, dtype=xp.int64)
            clear = xp.nonzero(cs[idx + count] == cs[idx])[0]
            if clear.shape[0] == 0:
                return False
            no = int(idx[clear[0]])
            ret = yield from self.alloc_contig_range(self.base + no, self.base + no + count)
            if ret == OK:
                self.bitmap[no : no + count] = True
                return True
            if ret != EBUSY:
                return False
            start = no + step

    def bulk(self, start: int, end: int, order: int, nr_elem: int) -> Generator[int, int, int]:
        """alloc_pages_bulk(start, end, order, nr_elem) (KM 8.3, tick-model.md 7.3)."""
        eng, xp = self.eng, self.xp
        lo, hi = start & ~(CH - 1), -(-end // CH) * CH
        self.res[_T["windows"]] += 1
        if self.isolate(lo, hi) != OK:
            return 0
        yield from self.migrate(start, end, best_effort=True)
        size = 1 << order
        c0 = (start + size - 1) // size * size
        nch = (end - c0) // size
        got = 0
        if nch > 0:
            seg = eng.kind[self.zi, c0 : c0 + nch * size].reshape(nch, size)
            ok = xp.nonzero((seg == ISOFREE).all(axis=1))[0][:nr_elem]
            got = int(ok.shape[0])
            if got:
                sel = xp.zeros(nch, dtype=bool)
                sel[ok] = True
                m = xp.repeat(sel, size)
                part = eng.kind[self.zi, c0 : c0 + nch * size]
                eng.kind[self.zi, c0 : c0 + nch * size] = xp.where(m, HELD, part).astype(xp.uint8)
                self.mine[c0 : c0 + nch * size] |= m
                self.recount(c0 & ~(P - 1), -(-(c0 + nch * size) // P) * P)
        self.undo(lo, hi)
        return got


def get_order(nr_pages: int) -> int:
    """get_order() of a size in pages: the smallest o with 2^o >= nr_pages."""
    return max(0, (nr_pages - 1).bit_length())


def _trial(eng: Any, ph: Phase, zi: int, index: int, meth: int, busy: float):
    """One zone's trial (tick-model.md 7.4) as a generator of migration-target requests;
    returns its TRIAL_FIELDS values."""
    count, order = ph.contig_count, ph.contig_order
    s = _Zone(eng, zi, index, busy)
    got = 0
    if meth == CONTIG_CMA_RANGE:
        nr = count << order
        if (yield from s.cma_alloc(nr, min(get_order(nr), CONFIG_CMA_ALIGNMENT))):
            got = count
    elif meth == CONTIG_CMA_ORDER:
        while got < count and (
            yield from s.cma_alloc(1 << order, min(order, CONFIG_CMA_ALIGNMENT))
        ):
            got += 1
    elif meth == CONTIG_CMA_ORDER10:
        per = CH >> order
        align = min(get_order(CH), CONFIG_CMA_ALIGNMENT)
        while got < count and (yield from s.cma_alloc(CH, align)):
            got = min(count, got + per)
    elif meth == CONTIG_BULK:
        got = yield from s.bulk(s.base, eng.N, order, count)
    elif meth == CONTIG_BULK_RANGE:  # count pieces' pages from the area's base, at most N
        got = yield from s.bulk(s.base, min(eng.N, s.base + (count << order)), order, count)
    # cma_release(): every page of the trial, one ascending order-0 free sequence
    s.free_mask(0, eng.N, s.mine)
    s.res[_T["obtained"]] = got
    s.res[_T["complete"]] = int(got >= count)
    return s.res


def contig_trial(eng: Any, ph: Phase, index: int, method: np.ndarray, busy: np.ndarray) -> Array:
    """Step 4b (tick-model.md 7.4): one trial per zone; (Z, len(TRIAL_FIELDS)) results.

    The zones' trials run in lockstep (7.5): each zone's trial runs until it needs
    migration targets, then the targets of every waiting zone come from one
    :func:`bulk_targets` call. Zones are independent, so the order across zones does not
    matter; within a zone every step keeps its order.
    """
    out = np.zeros((eng.Z, len(TRIAL_FIELDS)), dtype=np.int64)
    want = np.zeros(eng.Z, dtype=np.int64)
    gens = {}
    for zi in range(eng.Z):
        if int(method[zi]) == 0:
            continue
        g = _trial(eng, ph, zi, index, int(method[zi]), float(busy[zi]))
        try:
            want[zi] = next(g)
            gens[zi] = g
        except StopIteration as stop:
            out[zi] = stop.value
    while gens:
        got = bulk_targets(eng, want)
        want[:] = 0
        for zi in list(gens):
            try:
                want[zi] = gens[zi].send(int(got[zi]))
            except StopIteration as stop:
                out[zi] = stop.value
                del gens[zi]
    return out


# --------------------------------------------------------------------------- 7.5 targets

TARGETS_MODE = "auto"  # "auto": bulk rounds (_bulk_round); "seq": one get_page per target
TARGETS_CAP = 1 << 14  # targets per zone and bulk round (bounds the (Z, A, lists) arrays)


def _target_lists(eng: Any, rem: np.ndarray, a_n: int) -> Array:
    """The free list (MOVABLE or CMA) that each of a zone's next ``rem`` order-0 MOVABLE
    allocations takes from while both lists it uses hold pages (tick-model.md 7.5);
    right-aligned in (Z, a_n), as _bulk_round's ``start = a_n - rem`` reads it.

    v4_12 __rmqueue: __rmqueue_smallest(MOVABLE) until the MOVABLE lists are empty, then
    __rmqueue_cma_fallback. v6_19 adds CMA first while NR_FREE_CMA > NR_FREE / 2: with
    c CMA pages, nr free pages and x_j CMA takes before event j, event j takes CMA iff
    c - x_j > (nr - j) // 2, i.e. iff x_j < G(j) = c - (nr - j) // 2; G is nondecreasing
    with steps of at most 1, so x_{j+1} = min(j + 1, max(0, G(j))) (induction on j). Past
    the MOVABLE pages (v6_19: where it would take an empty MOVABLE list) _bulk_round stops
    and the event runs alone through the general path.
    """
    xp = eng.xp
    nrf = to_numpy(eng.nrf)
    ar = np.arange(nrf.shape[1], dtype=np.int64)
    m = (nrf[:, :, MT_M] << ar[None, :]).sum(axis=1)
    c = (nrf[:, :, MT_CMA] << ar[None, :]).sum(axis=1) if nrf.shape[2] > MT_CMA else 0 * m
    nr = np.asarray(to_numpy(eng.nr_free), dtype=np.int64)
    j = np.arange(a_n, dtype=np.int64)[None, :] - (a_n - rem)[:, None]
    if eng.v6:
        x1 = np.minimum(j + 1, np.maximum(0, c[:, None] - (nr[:, None] - j) // 2))
        x0 = np.minimum(j, np.maximum(0, c[:, None] - (nr[:, None] - j + 1) // 2))
        x0 = np.where(j == 0, 0, x0)
        take_cma = (x1 > x0) | (m[:, None] == 0)
    else:
        take_cma = j >= m[:, None]
    lists = np.where(take_cma, MT_CMA, MT_M)
    lists = np.where(j >= 0, lists, MT_M)  # no event there (_bulk_round: j < start)
    return xp.asarray(lists.astype(np.int64))


def bulk_targets(eng: Any, want: np.ndarray) -> np.ndarray:
    """Up to ``want[z]`` migration targets in each zone: alloc_migration_target() as
    get_page(0, wmark_min, MOVABLE) with the kind ANON, one after another until the first
    failure (tick-model.md 7.3); returns how many each zone got.

    Exactly the one-at-a-time sequence (TARGETS_MODE "seq", the tests compare): bulk
    rounds of the engine's _bulk_round (its order-0 __rmqueue_smallest model) over the
    lists :func:`_target_lists` gives, no kswapd wake-up (get_page has none); the event
    where a round stops runs alone through get_page (fallbacks, or the failure).
    """
    xp = eng.xp
    z_n = eng.Z
    want = np.asarray(want, dtype=np.int64)
    got = np.zeros(z_n, dtype=np.int64)
    live = want > 0

    def single(z: np.ndarray) -> None:
        zx = xp.asarray(z.astype(np.int64))
        k = zx.shape[0]
        t = eng._get_page(
            zx,
            xp.zeros(k, dtype=xp.int64),
            eng.wmin[zx],
            xp.full(k, MT_M, dtype=xp.int64),
            xp.full(k, ANON, dtype=xp.int64),
        )
        ok = to_numpy(t) >= 0
        got[z[ok]] += 1
        live[z[~ok]] = False

    while live.any():
        if TARGETS_MODE == "seq":
            single(np.nonzero(live)[0])
        else:
            rem = np.where(live, np.minimum(want - got, TARGETS_CAP), 0)
            a_n = int(rem.max())
            start = a_n - rem
            kinds = xp.full((z_n, a_n), ANON, dtype=xp.uint8)
            j0 = to_numpy(eng._bulk_round(kinds, xp.asarray(start), _target_lists(eng, rem, a_n)))
            got += np.where(live, j0 - start, 0)
            stopped = np.nonzero(live & (j0 < a_n))[0]
            if stopped.shape[0]:
                single(stopped)
        live &= got < want
    return got
