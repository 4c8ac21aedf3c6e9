"""Memory regions (seed 002) in the batched tick engine: docs/tick-model.md section 6.

Srivatsa Bhat's 2013 "[Sorted-buddy] mm: Memory Power Management" RFC (KM 12(e)): free
lists sorted by memory region and the alloc/free handshake of its patch 14 that queues a
worker to evacuate a freshly used region. The functions here take the engine
(``kernels.tick._Engine``) and its row index arrays ``z``; ``kernels/tick.py`` calls them
at the places marked ``# regions (seed 002)``. The per-zone reference is
``tests/reference/regions.py``.

Per-zone state (``init``): ``reg_blocks`` (pageblocks per region, a power of two),
``reg_lo`` / ``reg_hi`` (every region's pageblock bounds),
``reg_sorted`` / ``reg_evac`` (the two switches), ``mpc_region`` (the noted region,
``mem_power_ctrl.region``, -1 = none) and ``mpc_inprog``
(``is_mem_pwr_work_in_progress()``). Region sums are read from the engine's per-pageblock
FREE counts (``nfree_b``), so nothing new is kept by deltas.

Sorted ``first(o, mt)`` (TM 6.2): the lowest region holding a head of the group, then the
largest key there. A region is 2^k pageblocks, so it is either inside one 64-pageblock
superblock or a whole number of them: the superblock maxima of the region's superblocks,
then the pageblock maxima of the region's pageblocks, then the pageblock window, each an
argmax as in the plain search (which is the same code with the whole zone as the region).

Layer rule: array code only (NumPy/CuPy through ``eng.xp``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels.program import ANON, COUNTER_INDEX, FILE, PIN

Array = Any
P = 512  # pages per pageblock
SB = 64  # pageblocks per superblock of the engine's first() search
MT_M, MT_R = 1, 2
_C = COUNTER_INDEX


def init(eng: Any, zp: dict[str, Array]) -> None:
    """Region state of every zone (TM 6.1), from the TickZones arrays ``zp``."""
    xp = eng.xp
    eng.reg_blocks = zp["region_blocks"].astype(xp.int64)
    eng.reg_sorted = zp["sorted_freelists"].astype(bool)
    eng.reg_evac = zp["region_evacuation"].astype(bool)
    eng.reg_delayed = zp["region_worker_delayed"].astype(bool)
    eng.any_sorted = bool(eng.reg_sorted.any())
    eng.any_evac = bool(eng.reg_evac.any())
    eng.mpc_region = xp.full(eng.Z, -1, dtype=xp.int64)
    eng.mpc_inprog = xp.zeros(eng.Z, dtype=bool)
    # pageblock bounds [reg_lo, reg_hi) of every region (empty past the zone's last one)
    eng.reg_nr = int(to_host_max(-(-eng.B // eng.reg_blocks)))
    r = xp.arange(eng.reg_nr, dtype=xp.int64)[None, :]
    rb = eng.reg_blocks[:, None]
    eng.reg_lo = xp.minimum(r * rb, eng.B)  # (Z, reg_nr)
    eng.reg_hi = xp.minimum((r + 1) * rb, eng.B)
    eng.reg_present = (eng.reg_hi - eng.reg_lo) * P  # present_pages (0: no such region)


def to_host_max(a: Array) -> int:
    return int(a.max()) if a.shape[0] else 1


def region_free_pages(eng: Any, z: Array) -> Array:
    """(M, reg_nr) FREE pages of every region of zones z (zmr->nr_free)."""
    xp = eng.xp
    cs = xp.cumsum(eng.nfree_b[z], axis=1)
    cs = xp.concatenate([xp.zeros((z.shape[0], 1), dtype=cs.dtype), cs], axis=1)
    return xp.take_along_axis(cs, eng.reg_hi[z], 1) - xp.take_along_axis(cs, eng.reg_lo[z], 1)


def region_entirely_free(eng: Any, z: Array) -> Array:
    """(M, reg_nr) bool: zmr->nr_free == zmr->present_pages (existing regions only)."""
    present = eng.reg_present[z]
    return (region_free_pages(eng, z) == present) & (present > 0)


def nr_free_regions(eng: Any) -> Array:
    """(Z,) regions with every page free: the power-down candidates (TM 4 step 6)."""
    return region_entirely_free(eng, eng.xp.arange(eng.Z, dtype=eng.xp.int64)).sum(axis=1)


def find_block(eng: Any, z: Array, base: Array) -> tuple[Array, Array]:
    """first(o, mt)'s (superblock row, pageblock) for rows z of group rows ``base``.

    Plain rows search the whole zone (exactly the plain argmaxes); sorted rows the lowest
    region holding a head of the group (TM 6.2).
    """
    xp = eng.xp
    sbv = eng.sbmax_rows[base]  # (M, S)
    none = np.iinfo(np.int64).min
    rb = eng.reg_blocks[z]
    srt = eng.reg_sorted[z]
    # the lowest pageblock holding a head of the group, then its region
    s0 = xp.argmax(sbv != none, axis=1)
    b0 = s0 * SB + xp.argmax(eng.bmax_rows[base * eng.S + s0] != none, axis=1)
    lo = xp.where(srt, (b0 // rb) * rb, 0)
    hi = xp.where(srt, lo + rb, eng.BP)
    ss = xp.arange(eng.S, dtype=xp.int64)[None, :]
    insb = (ss >= (lo // SB)[:, None]) & (ss < ((hi + SB - 1) // SB)[:, None])
    s = xp.argmax(xp.where(insb, sbv, none), axis=1)
    srow = base * eng.S + s
    bb = s[:, None] * SB + xp.arange(SB, dtype=xp.int64)[None, :]
    inb = (bb >= lo[:, None]) & (bb < hi[:, None])
    b = s * SB + xp.argmax(xp.where(inb, eng.bmax_rows[srow], none), axis=1)
    return srow, b


def note(eng: Any, z: Array, h: Array, o: Array, list_mt: Array) -> None:
    """The alloc half of the handshake (rmqueue_del_from_freelist(), patch 14), TM 6.3.

    Rows z (distinct zones) just took head h of order o from list ``list_mt``; the caller
    has deleted it but not yet expanded it or set its pages' kind.
    """
    xp = eng.xp
    # a region that is entirely free is made of free blocks of order >= 9 only
    cand = eng.reg_evac[z] & ~eng.mpc_inprog[z] & (o >= 9)
    cand &= (list_mt == MT_M) | (list_mt == MT_R)
    if not bool(cand.any()):
        return
    r = xp.nonzero(cand)[0]
    zz = z[r]
    reg = (h[r] >> 9) // eng.reg_blocks[zz]
    free = region_entirely_free(eng, zz)[xp.arange(r.shape[0]), reg]
    ok = free & (reg != 0)
    eng.mpc_region[zz[ok]] = reg[ok]


def queue_work(eng: Any, z: Array) -> None:
    """The free half (add_to_freelist(), patch 14): zones z just added a head to a list."""
    q = eng.reg_evac[z] & ~eng.mpc_inprog[z] & (eng.mpc_region[z] >= 0)
    if bool(q.any()):
        eng.mpc_inprog[z[q]] = True  # set_mem_pwr_work_in_progress(); queue_work()


def bulk_notes(eng: Any, mt: Array, rank: Array, first: Array, log: tuple[Array, ...]) -> Array:
    """(Z, A) events of a bulk round that must run alone (TM 6.5): those stop it.

    An event notes a region only when it takes page 0 of a head in a region that was
    entirely free at the start of the round (a region touched earlier in the round was
    touched by such an event, which stopped the round there). A zone with a noted region
    whose work is not queued yet (an allocation that did not split its block) runs its
    ``first`` event alone too, until an insertion into a free list has queued the work.
    """
    xp = eng.xp
    ez, ep, em, gcum, gx, segbase, tot = log
    z_n = eng.Z
    pending = eng.reg_evac & ~eng.mpc_inprog & (eng.mpc_region >= 0)
    if gcum.shape[0] == 0:
        return first & pending[:, None]
    zi = xp.arange(z_n, dtype=xp.int64)[:, None]
    seg = zi * (tot.shape[0] // z_n) + mt  # tot is (zone, free list) flat: NMT lists a zone
    valid = (rank >= 0) & (rank < tot[seg])
    gp = xp.where(valid, segbase[seg] + rank, 0)
    e = xp.minimum(xp.searchsorted(gcum, gp, side="right"), gcum.shape[0] - 1)
    first_page = (gp - gx[e]) == 0
    reg = (ep[e] >> 9) // eng.reg_blocks[:, None]
    regfree = region_entirely_free(eng, xp.arange(z_n, dtype=xp.int64))
    free = xp.take_along_axis(regfree, xp.minimum(reg, eng.reg_nr - 1), axis=1)
    flag = valid & first_page & free & (reg != 0) & ((em[e] == MT_M) | (em[e] == MT_R))
    return (flag & (eng.reg_evac & ~eng.mpc_inprog)[:, None]) | (first & pending[:, None])


def mem_power_work(eng: Any, delayed: bool) -> None:
    """The queued worker of every zone with work in progress (TM 6.4) whose worker runs
    at this point: at the end of the tick, or (``delayed``) after the tick's frees.

    Evacuates the noted region pageblock by pageblock: the migrate scanner's walk and
    isolation as process_source_block() counts them, then every candidate in ascending
    PFN order takes a target from get_page(0, wmark_min, MOVABLE); a target in the same
    or a higher region is freed back and ends the work, as does no target; the block's
    migrated sources are freed (ascending) before the next block.
    """
    xp = eng.xp
    z = xp.nonzero(eng.mpc_inprog & (eng.reg_delayed if delayed else ~eng.reg_delayed))[0]
    if z.shape[0] == 0:
        return
    c = eng.cnt
    c[z, _C["region_evacuations"]] += 1
    reg = eng.mpc_region[z]
    rb = eng.reg_blocks[z]
    start = reg * rb
    nblk = xp.minimum(rb, eng.B - start)
    stopped = xp.zeros(z.shape[0], dtype=bool)
    i64 = xp.int64
    for j in range(int(nblk.max())):
        act = xp.nonzero((j < nblk) & ~stopped)[0]
        if act.shape[0] == 0:
            break
        za = z[act]
        blk = start[act] + j
        k = eng.kb[za * eng.B + blk]
        bo = eng.bob[za * eng.B + blk].astype(i64)
        head10 = bo[:, 0] == 10
        if eng.v6:
            ms = xp.where(head10, 2 * P, P)
        else:
            hs = xp.where((bo >= 0) & (bo <= 9), (i64(1) << xp.maximum(bo, 0)) - 1, 0)
            ms = xp.where(head10, 1, P - hs.sum(axis=1))
        c[za, _C["compact_migrate_scanned"]] += ms
        ispin = k == PIN
        cand = (k == ANON) | (k == FILE) | (ispin & ~eng.skip_pinned[za][:, None])
        ncand = cand.sum(axis=1, dtype=i64)
        c[za, _C["compact_isolated"]] += ncand
        c[za, _C["lru_lock_acquisitions"]] += cand.reshape(-1, P // 32, 32).any(axis=2).sum(1)
        sub = xp.nonzero(ncand > 0)[0]
        if sub.shape[0] == 0:
            continue
        zs, bs, ks, cs, ns = za[sub], blk[sub], k[sub], cand[sub], ncand[sub]
        rs, rbs = reg[act][sub], rb[act][sub]
        arp = xp.arange(P, dtype=i64)[None, :]
        order = xp.argsort(xp.where(cs, arp, P + arp), axis=1)  # candidates first, ascending
        stop = xp.zeros(sub.shape[0], dtype=bool)
        migrated = xp.zeros(cs.shape, dtype=bool)
        for i in range(int(ns.max())):
            live = xp.nonzero((i < ns) & ~stop)[0]
            if live.shape[0] == 0:
                break
            pos = order[live, i]
            kind_src = ks[live, pos].astype(i64)
            pin = kind_src == PIN
            if bool(pin.any()):
                c[zs[live[pin]], _C["pgmigrate_fail"]] += 1
            mv = live[~pin]
            if mv.shape[0] == 0:
                continue
            zm = zs[mv]
            zero = xp.zeros(mv.shape[0], dtype=i64)
            t = eng._get_page(zm, zero, eng.wmin[zm], zero + MT_M, kind_src[~pin])
            back = (t >= 0) & ((t >> 9) // rbs[mv] >= rs[mv])
            if bool(back.any()):
                eng._free_pfns(zm[back], t[back])  # no gain: the target goes back
            fail = (t < 0) | back
            c[zm[fail], _C["pgmigrate_fail"]] += 1
            stop[mv[fail]] = True
            good = mv[~fail]
            c[zs[good], _C["pgmigrate_success"]] += 1
            migrated[good, pos[~pin][~fail]] = True
        mr, mp = xp.nonzero(migrated)
        if mr.shape[0]:
            eng._free_pfns(zs[mr], bs[mr] * P + mp)
        stopped[act[sub[stop]]] = True
    eng.mpc_region[z] = -1
    eng.mpc_inprog[z] = False
