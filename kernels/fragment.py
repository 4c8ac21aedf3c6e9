"""Zone initialisers ("fragmenters"): seeded, reproducible initial page states.

Each layout turns :class:`FragmentParams` into ``(page_state (Z, N) uint8,
pageblock_migratetype (Z, B) int8)`` on the requested backend, using the page-state
codes of :mod:`kernels.zone`. Per-zone counts are exact integers computed on the host
(:func:`fragment_counts`); positions come from the counter-based hash of
:mod:`kernels.rng`, so zone ``z`` of a batch is bit-identical to the same zone built
alone and NumPy and CuPy agree bit for bit.

Layouts
-------
``random_mix``
    Grouping by mobility with pollution. Pageblocks are typed first: enough UNMOVABLE
    blocks for the unmovable pages that are not pollution, likewise RECLAIMABLE, the rest
    MOVABLE; which blocks get which type is random per zone. Non-polluting unmovable
    (reclaimable) pages sit at random positions of their own blocks, whose leftover
    space is free. MOVABLE blocks receive the large folios first (random naturally
    aligned slots, largest order first), then the polluting unmovable/reclaimable pages,
    the pinned pages, the movable base pages and the free pages at random positions of
    what is left. Polluted ("mixed") movable blocks are the ones compaction can never
    empty.
``holepunch``
    Seed 000 (kcompactd v2, patches 2-4): "memory is fragmented with allocating a large
    file and then in every other page a hole is punched". Non-movable blocks, pollution
    and pinned pages are placed as in ``random_mix``. Every MOVABLE page is a page of one
    file, which takes the lowest still-free PFNs of the MOVABLE blocks, from the zone
    start upward. Then the file pages at odd file offsets (the 2nd, 4th, ... page of the
    file) are freed. ``free_fraction`` is the free memory *before* punching: free
    U/R-block leftovers plus the free space above the end of the file. A file of ``L``
    pages gives ``L // 2`` more free pages. Punching splits large folios, so this layout
    has base pages only (``folio_fraction`` must be 0).
``free_quarter``
    "Free 3/4 of every pageblock": each pageblock keeps exactly 128 allocated pages at
    random positions. All fractions except ``free_fraction`` (unused, the free memory is
    exactly 3/4) are relative to the ``N / 4`` allocated pages. Pageblocks are typed as in
    ``random_mix``, except that a type's blocks are counted in 128-page allocations. The
    spare allocated slots of the last UNMOVABLE/RECLAIMABLE block hold movable base
    pages (as fallback allocations do). Folios (order <= 7) take random aligned slots in
    MOVABLE blocks without exceeding the block's 128 allocated pages.

Rounding
--------
A count is ``floor(fraction * total + 0.5)`` in float64 (``total`` = ``nr_pages``, or the
allocated pages for ``free_quarter``). MOVABLE pages are what remain. The polluting pages
are ``floor(pollution * nr_unmovable + 0.5)`` (likewise reclaimable). Folio memory
``floor(folio_fraction * nr_movable + 0.5)`` is split as evenly as possible among
``folio_orders`` (ascending orders get the remainder pages first), and each order's share
is rounded down to whole folios. Pages lost to that rounding stay movable base pages.

Layer rule: pure array code plus host-side parameter checks. It imports only
``kernels.backend``, ``kernels.rng`` and ``kernels.zone``.
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any

import numpy as np

from kernels import rng
from kernels.backend import Array, to_numpy
from kernels.zone import (
    FREE,
    MAX_FOLIO_ORDER,
    MOVABLE,
    PAGEBLOCK_NR_PAGES,
    PINNED,
    RECLAIMABLE,
    UNMOVABLE,
    MigrateType,
    ZoneState,
    folio_head_code,
    folio_tail_code,
    setup_per_zone_wmarks,
)

LAYOUTS = ("holepunch", "random_mix", "free_quarter")
FRACTION_FIELDS = (
    "free_fraction",
    "unmovable_fraction",
    "reclaimable_fraction",
    "pinned_fraction",
    "pollution",
    "folio_fraction",
)
# Sum of the four page fractions may exceed 1 by float noise (0.1 + 0.2 + 0.7) but no more.
_FRACTION_SUM_TOLERANCE = 1e-9
FREE_QUARTER_KEPT = PAGEBLOCK_NR_PAGES // 4  # allocated pages per pageblock in free_quarter
FREE_QUARTER_MAX_FOLIO_ORDER = 7  # a folio must fit in the 128 allocated pages of a block

# rng streams (per zone seed); folio order k uses _STREAM_FOLIO + 2k and + 2k + 1.
_STREAM_PAGEBLOCK = 1
_STREAM_PAGES = 2
_STREAM_KEPT = 3
_STREAM_FOLIO = 16

# Pools of pages that are filled in one random order each (keyed_order groups).
_POOL_UNMOVABLE_BLOCK = 0
_POOL_RECLAIMABLE_BLOCK = 1
_POOL_MOVABLE_BLOCK = 2
_POOL_OTHER = 3  # folio pages (and, for free_quarter, the pages left free)
_POOL_BITS = 2


@dataclasses.dataclass(frozen=True, slots=True)
class FragmentParams:
    """Parameters of a zone initialiser; Z zones of ``nr_pages`` pages each.

    ``layout``, ``nr_pages`` and ``folio_orders`` are static (shape-defining); every
    other field is a per-zone ``(Z,)`` array (NumPy or CuPy), see the module docstring
    for the meaning of each fraction under each layout.
    """

    layout: str  # "holepunch" | "random_mix" | "free_quarter"
    nr_pages: int  # N, pages per zone, a positive multiple of pageblock_nr_pages
    seed: Array  # (Z,) uint64; per-zone seed (kernels.rng.zone_seed)
    free_fraction: Array  # (Z,) float64; free pages / N
    unmovable_fraction: Array  # (Z,) float64; UNMOVABLE pages / N
    reclaimable_fraction: Array  # (Z,) float64; RECLAIMABLE pages / N
    pinned_fraction: Array  # (Z,) float64; PINNED pages / N
    pollution: Array  # (Z,) float64; share of U/R pages placed inside MOVABLE blocks
    folio_fraction: Array  # (Z,) float64; share of MOVABLE pages in large folios
    folio_orders: tuple[int, ...] = ()  # folio orders in 1..9 sharing the folio memory

    @classmethod
    def create(
        cls,
        layout: str,
        nr_pages: int,
        seed: Any,
        *,
        free_fraction: Any = 0.0,
        unmovable_fraction: Any = 0.0,
        reclaimable_fraction: Any = 0.0,
        pinned_fraction: Any = 0.0,
        pollution: Any = 0.0,
        folio_fraction: Any = 0.0,
        folio_orders: tuple[int, ...] = (),
    ) -> FragmentParams:
        """Build host (NumPy) params, broadcasting scalars to the ``(Z,)`` shape of ``seed``."""
        seed = np.atleast_1d(np.asarray(seed)).astype(np.uint64)
        if seed.ndim != 1:
            raise ValueError(f"seed must be one-dimensional (Z,), got shape {seed.shape}")

        def per_zone(name: str, value: Any) -> np.ndarray:
            try:
                return np.broadcast_to(np.asarray(value, dtype=np.float64), seed.shape).copy()
            except ValueError:
                raise ValueError(
                    f"{name} must be a scalar or have shape {seed.shape}, got {np.shape(value)}"
                ) from None

        fractions = dict(
            free_fraction=free_fraction,
            unmovable_fraction=unmovable_fraction,
            reclaimable_fraction=reclaimable_fraction,
            pinned_fraction=pinned_fraction,
            pollution=pollution,
            folio_fraction=folio_fraction,
        )
        return cls(
            layout=layout,
            nr_pages=nr_pages,
            seed=seed,
            folio_orders=tuple(folio_orders),
            **{name: per_zone(name, value) for name, value in fractions.items()},
        )

    @property
    def nr_zones(self) -> int:
        return int(self.seed.shape[0])

    def __getitem__(self, zones: Any) -> FragmentParams:
        """Select zones (an int, slice or index array) keeping the zone axis."""
        if isinstance(zones, int):
            zones = slice(zones, zones + 1)
        per_zone = {name: getattr(self, name)[zones] for name in ("seed", *FRACTION_FIELDS)}
        return dataclasses.replace(self, **per_zone)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the offending field if the params are unusable."""
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if (
            not isinstance(self.nr_pages, (int, np.integer))
            or self.nr_pages <= 0
            or self.nr_pages % PAGEBLOCK_NR_PAGES
        ):
            raise ValueError(
                f"nr_pages must be a positive multiple of {PAGEBLOCK_NR_PAGES}, "
                f"got {self.nr_pages!r}"
            )
        seed = to_numpy(self.seed)
        if seed.ndim != 1 or seed.shape[0] == 0:
            raise ValueError(f"seed must have shape (Z,) with Z >= 1, got {seed.shape}")
        for name in FRACTION_FIELDS:
            value = to_numpy(getattr(self, name))
            if value.shape != seed.shape:
                raise ValueError(
                    f"{name} must have shape {seed.shape} like seed, got {value.shape}"
                )
            bad = ~((value >= 0.0) & (value <= 1.0))  # also catches NaN
            if bad.any():
                raise ValueError(
                    f"{name} must be in [0, 1]; got {value[bad][:4].tolist()} in zone(s) "
                    f"{np.flatnonzero(bad)[:4].tolist()}"
                )
        total = sum(
            to_numpy(getattr(self, name))
            for name in (
                "free_fraction",
                "unmovable_fraction",
                "reclaimable_fraction",
                "pinned_fraction",
            )
        )
        if self.layout == "free_quarter":
            total = total - to_numpy(self.free_fraction)  # free_fraction is unused there
        bad = total > 1.0 + _FRACTION_SUM_TOLERANCE
        if bad.any():
            raise ValueError(
                "free_fraction + unmovable_fraction + reclaimable_fraction + pinned_fraction must "
                f"be <= 1; got {total[bad][:4].tolist()} in zone(s) "
                f"{np.flatnonzero(bad)[:4].tolist()}"
            )
        orders = self.folio_orders
        if any(
            not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_FOLIO_ORDER for k in orders
        ):
            raise ValueError(f"folio_orders must be orders in 1..{MAX_FOLIO_ORDER}, got {orders!r}")
        if len(set(orders)) != len(orders):
            raise ValueError(f"folio_orders must not repeat an order, got {orders!r}")
        uses_folios = bool((to_numpy(self.folio_fraction) > 0).any())
        if uses_folios and not orders:
            raise ValueError("folio_orders is empty but folio_fraction > 0")
        if self.layout == "holepunch" and uses_folios:
            raise ValueError(
                "folio_fraction must be 0 for layout 'holepunch' "
                "(punching holes splits large folios)"
            )
        if self.layout == "free_quarter" and any(k > FREE_QUARTER_MAX_FOLIO_ORDER for k in orders):
            raise ValueError(
                f"folio_orders must be <= {FREE_QUARTER_MAX_FOLIO_ORDER} for layout 'free_quarter' "
                f"(a folio must fit in the {FREE_QUARTER_KEPT} allocated pages of a pageblock), "
                f"got {orders!r}"
            )


@dataclasses.dataclass(frozen=True, slots=True)
class FragmentCounts:
    """Exact per-zone page counts of a layout (host NumPy int64), final state."""

    nr_free: np.ndarray  # (Z,) int64; FREE pages (holepunch: after punching)
    nr_movable: np.ndarray  # (Z,) int64; MOVABLE pages, folio pages included
    nr_unmovable: np.ndarray  # (Z,) int64; UNMOVABLE pages, polluting ones included
    nr_reclaimable: np.ndarray  # (Z,) int64; RECLAIMABLE pages, polluting ones included
    nr_pinned: np.ndarray  # (Z,) int64; PINNED pages (all in MOVABLE blocks)
    nr_folios: np.ndarray  # (Z, MAX_FOLIO_ORDER + 1) int64; folios per order (column = order)
    nr_polluting_unmovable: np.ndarray  # (Z,) int64; UNMOVABLE pages in MOVABLE blocks
    nr_polluting_reclaimable: np.ndarray  # (Z,) int64; RECLAIMABLE pages in MOVABLE blocks
    nr_pageblocks: np.ndarray  # (Z, 3) int64; blocks typed UNMOVABLE, RECLAIMABLE, MOVABLE
    nr_file_pages: np.ndarray  # (Z,) int64; holepunch file size before punching, else 0

    @property
    def nr_folio_pages(self) -> np.ndarray:
        """(Z,) int64; pages in large folios."""
        return (self.nr_folios << np.arange(self.nr_folios.shape[1])).sum(axis=1)

    def kind_counts(self) -> np.ndarray:
        """(Z, 5) int64; pages per kind, indexed by the kind codes FREE..PINNED."""
        return np.stack(
            [self.nr_free, self.nr_movable, self.nr_unmovable, self.nr_reclaimable, self.nr_pinned],
            axis=1,
        )


def _round_count(fraction: Any, total: Any) -> np.ndarray:
    """floor(fraction * total + 0.5) in float64, as int64 (the documented rounding)."""
    return np.floor(np.asarray(fraction, np.float64) * np.asarray(total, np.float64) + 0.5).astype(
        np.int64
    )


def _ceil_div(a: np.ndarray, b: int) -> np.ndarray:
    return -(-a // b)


def _raise_unfit(params: FragmentParams, bad: np.ndarray, why: str) -> None:
    zones = np.flatnonzero(bad)[:4]
    values = ", ".join(
        f"{name}={to_numpy(getattr(params, name))[zones].tolist()}" for name in FRACTION_FIELDS
    )
    raise ValueError(
        f"layout {params.layout!r} cannot fit zone(s) {zones.tolist()}: {why} ({values})"
    )


def fragment_counts(params: FragmentParams) -> FragmentCounts:
    """Exact per-zone counts for ``params`` (module docstring, "Rounding").

    Raises ``ValueError`` (naming the fractions) when the request cannot be laid out.
    """
    params.validate()
    nr_pages = int(params.nr_pages)
    nr_blocks = nr_pages // PAGEBLOCK_NR_PAGES
    quarter = params.layout == "free_quarter"
    allocated = nr_blocks * FREE_QUARTER_KEPT if quarter else nr_pages
    block_capacity = FREE_QUARTER_KEPT if quarter else PAGEBLOCK_NR_PAGES

    f = {name: to_numpy(getattr(params, name)).astype(np.float64) for name in FRACTION_FIELDS}
    nr_unmovable = _round_count(f["unmovable_fraction"], allocated)
    nr_reclaimable = _round_count(f["reclaimable_fraction"], allocated)
    nr_pinned = _round_count(f["pinned_fraction"], allocated)
    nr_free = (
        np.full_like(nr_unmovable, nr_pages - allocated)
        if quarter
        else _round_count(f["free_fraction"], nr_pages)
    )
    nr_movable = nr_pages - nr_free - nr_unmovable - nr_reclaimable - nr_pinned
    if (nr_movable < 0).any():
        _raise_unfit(params, nr_movable < 0, "the rounded page counts exceed the zone")

    poll_u = _round_count(f["pollution"], nr_unmovable)
    poll_r = _round_count(f["pollution"], nr_reclaimable)
    blocks_u = _ceil_div(nr_unmovable - poll_u, block_capacity)
    blocks_r = _ceil_div(nr_reclaimable - poll_r, block_capacity)
    blocks_m = nr_blocks - blocks_u - blocks_r
    if (blocks_m < 0).any():
        _raise_unfit(
            params, blocks_m < 0, "the unmovable and reclaimable pageblocks exceed the zone"
        )

    # Movable pages that land in MOVABLE blocks (free_quarter: spare U/R slots take some).
    spare = (
        (blocks_u + blocks_r) * block_capacity - (nr_unmovable - poll_u) - (nr_reclaimable - poll_r)
    )
    movable_in_m = nr_movable - spare if quarter else nr_movable
    need = poll_u + poll_r + nr_pinned + movable_in_m
    bad = (need > blocks_m * block_capacity) | (movable_in_m < 0)
    if bad.any():
        _raise_unfit(
            params,
            bad,
            "the movable pageblocks cannot hold the movable, pinned and polluting pages",
        )

    nr_folios = np.zeros((len(nr_free), MAX_FOLIO_ORDER + 1), dtype=np.int64)
    orders = sorted(params.folio_orders)
    if orders:
        folio_pages = _round_count(f["folio_fraction"], nr_movable)
        for i, k in enumerate(orders):
            share = folio_pages // len(orders) + (i < folio_pages % len(orders))
            nr_folios[:, k] = share >> k
    folio_total = (nr_folios << np.arange(MAX_FOLIO_ORDER + 1)).sum(axis=1)
    bad = folio_total > movable_in_m
    if bad.any():
        _raise_unfit(params, bad, "the large folios do not fit in the movable pageblocks")

    nr_file_pages = np.zeros_like(nr_free)
    if params.layout == "holepunch":
        nr_file_pages = nr_movable
        nr_free = nr_free + nr_movable // 2
        nr_movable = nr_movable - nr_movable // 2
    return FragmentCounts(
        nr_free=nr_free,
        nr_movable=nr_movable,
        nr_unmovable=nr_unmovable,
        nr_reclaimable=nr_reclaimable,
        nr_pinned=nr_pinned,
        nr_folios=nr_folios,
        nr_polluting_unmovable=poll_u,
        nr_polluting_reclaimable=poll_r,
        nr_pageblocks=np.stack([blocks_u, blocks_r, blocks_m], axis=1),
        nr_file_pages=nr_file_pages,
    )


# --------------------------------------------------------------------------------------
# Building blocks (device side)


def _merge_runs(lengths: np.ndarray, codes: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...]]:
    """Join neighbouring runs with the same code (fewer run boundaries to evaluate)."""
    keep = [0]
    for j in range(1, len(codes)):
        if codes[j] != codes[keep[-1]]:
            keep.append(j)
    merged = np.add.reduceat(lengths, keep, axis=1)
    return merged, tuple(codes[j] for j in keep)


def _fill_pools(
    xp: ModuleType, seeds: Array, pool: Array, lengths: np.ndarray, codes: tuple[int, ...]
) -> Array:
    """Page states from pools: each pool's pages in a random order receive runs of codes.

    ``pool`` (Z, N) uint8 names each page's pool; the pools' pages are ordered by pool,
    then randomly within it, and that order is filled with the runs of ``codes`` and
    ``lengths`` (Z, K) (whose rows follow the pool order and sum to N).
    """
    lengths, codes = _merge_runs(lengths, codes)
    run = rng.random_runs(xp, seeds, _STREAM_PAGES, lengths, group=pool, group_bits=_POOL_BITS)
    return xp.asarray(np.array(codes, dtype=np.uint8))[run]


def _pageblock_types(xp: ModuleType, seeds: Array, counts: FragmentCounts) -> Array:
    """``(Z, B)`` int8 migratetypes: the counted U/R/M blocks at random positions."""
    run = rng.random_runs(xp, seeds, _STREAM_PAGEBLOCK, counts.nr_pageblocks)
    types = [int(MigrateType.UNMOVABLE), int(MigrateType.RECLAIMABLE), int(MigrateType.MOVABLE)]
    return xp.asarray(np.array(types, dtype=np.int8))[run]


def _per_page(block_values: Array) -> Array:
    """Broadcast a ``(Z, B)`` per-pageblock array to ``(Z, N)`` pages (a copy)."""
    nr_zones, nr_blocks = block_values.shape
    pages = block_values[:, :, None].repeat(PAGEBLOCK_NR_PAGES, axis=2)
    return pages.reshape(nr_zones, nr_blocks * PAGEBLOCK_NR_PAGES)


def _place_folios(
    xp: ModuleType,
    seeds: Array,
    pageblock_mt: Array,
    nr_folios: np.ndarray,
    orders: tuple[int, ...],
    block_budget: int | None,
) -> Array:
    """``(Z, N)`` uint8 folio codes (0 elsewhere): folios in random aligned MOVABLE slots.

    Largest order first. A slot is available when it is in a MOVABLE pageblock and holds
    no larger folio. Larger folios cover whole aligned slots, so the available slots
    always cover what larger orders left. With ``block_budget`` (free_quarter), a block
    takes at most ``budget - folio pages so far`` pages of folios. Each block's available
    slots are ranked randomly, and only the first ``remaining >> k`` are eligible. The
    eligible count is then exactly ``(budget * movable blocks - larger folio pages) >> k``,
    which ``fragment_counts`` has checked.
    """
    nr_zones, nr_blocks = pageblock_mt.shape
    nr_pages = nr_blocks * PAGEBLOCK_NR_PAGES
    folio = xp.zeros((nr_zones, nr_pages), dtype=xp.uint8)
    movable_block = pageblock_mt == int(MigrateType.MOVABLE)  # (Z, B)
    used = xp.zeros((nr_zones, nr_blocks), dtype=xp.int64)  # folio pages per block so far
    for k in sorted(set(orders), reverse=True):
        if not nr_folios[:, k].any():
            continue
        size = 1 << k
        per_block = PAGEBLOCK_NR_PAGES >> k
        nr_slots = nr_pages >> k
        slots = folio.reshape(nr_zones, nr_slots, size)  # a view: writes land in folio
        available = (slots[:, :, 0] == 0).reshape(nr_zones, nr_blocks, per_block)
        available &= movable_block[:, :, None]
        if block_budget is not None:
            scratch = xp.empty((nr_zones, nr_slots), dtype=xp.uint64)
            words = rng.random_words(
                xp,
                seeds,
                _STREAM_FOLIO + 2 * k + 1,
                nr_slots,
                group=~available.reshape(nr_zones, nr_slots),
                group_bits=1,
                scratch=scratch,
            )
            cap = ((block_budget - used) >> k).reshape(-1)
            first = rng.runs_from_words(
                words.reshape(nr_zones * nr_blocks, per_block),
                xp.stack([cap, per_block - cap], axis=1),
                scratch=scratch,
            )
            del words, scratch
            available &= first.reshape(nr_zones, nr_blocks, per_block) == 0
        wanted = nr_folios[:, k]
        chosen = (
            rng.random_runs(
                xp,
                seeds,
                _STREAM_FOLIO + 2 * k,
                np.stack([wanted, nr_slots - wanted], axis=1),
                group=~available.reshape(nr_zones, nr_slots),
                group_bits=1,
            )
            == 0
        )
        template = xp.full(size, folio_tail_code(k), dtype=xp.uint8)
        template[0] = folio_head_code(k)
        heads = xp.nonzero(chosen.reshape(-1))[0]  # integer scatter: same on NumPy and CuPy
        slots.reshape(-1, size)[heads] = template
        used += chosen.reshape(nr_zones, nr_blocks, per_block).sum(axis=2, dtype=xp.int64) << k
    return folio


def _seeds(xp: ModuleType, params: FragmentParams) -> Array:
    return xp.asarray(to_numpy(params.seed).astype(np.uint64))


def _pool_of_blocks(xp: ModuleType, pageblock_mt: Array) -> Array:
    """``(Z, N)`` uint8 pool per page from its pageblock's migratetype."""
    lut = np.full(256, _POOL_OTHER, dtype=np.uint8)
    lut[int(MigrateType.UNMOVABLE)] = _POOL_UNMOVABLE_BLOCK
    lut[int(MigrateType.RECLAIMABLE)] = _POOL_RECLAIMABLE_BLOCK
    lut[int(MigrateType.MOVABLE)] = _POOL_MOVABLE_BLOCK
    return _per_page(xp.asarray(lut)[pageblock_mt.view(xp.uint8)])


# --------------------------------------------------------------------------------------
# Layouts


def _random_mix(xp: ModuleType, params: FragmentParams, c: FragmentCounts) -> tuple[Array, Array]:
    seeds = _seeds(xp, params)
    mt = _pageblock_types(xp, seeds, c)
    pool = _pool_of_blocks(xp, mt)
    folio = None
    if c.nr_folios.any():
        folio = _place_folios(xp, seeds, mt, c.nr_folios, params.folio_orders, None)
        pool[folio != 0] = _POOL_OTHER
    cap_u, cap_r, cap_m = (c.nr_pageblocks * PAGEBLOCK_NR_PAGES).T
    own_u = c.nr_unmovable - c.nr_polluting_unmovable
    own_r = c.nr_reclaimable - c.nr_polluting_reclaimable
    folio_pages = c.nr_folio_pages
    base_movable = c.nr_movable - folio_pages
    in_m = c.nr_polluting_unmovable + c.nr_polluting_reclaimable + c.nr_pinned + base_movable
    lengths = np.stack(
        [
            own_u,
            cap_u - own_u,  # UNMOVABLE blocks
            own_r,
            cap_r - own_r,  # RECLAIMABLE blocks
            c.nr_polluting_unmovable,
            c.nr_polluting_reclaimable,
            c.nr_pinned,
            base_movable,
            cap_m - folio_pages - in_m,  # MOVABLE blocks, folio pages excluded
            folio_pages,  # filled by the folio codes below
        ],
        axis=1,
    )
    codes = (
        UNMOVABLE,
        FREE,
        RECLAIMABLE,
        FREE,
        UNMOVABLE,
        RECLAIMABLE,
        PINNED,
        MOVABLE,
        FREE,
        FREE,
    )
    page_state = _fill_pools(xp, seeds, pool, lengths, codes)
    if folio is not None:
        page_state |= folio
    return page_state, mt


def _holepunch(xp: ModuleType, params: FragmentParams, c: FragmentCounts) -> tuple[Array, Array]:
    seeds = _seeds(xp, params)
    mt = _pageblock_types(xp, seeds, c)
    pool = _pool_of_blocks(xp, mt)
    cap_u, cap_r, cap_m = (c.nr_pageblocks * PAGEBLOCK_NR_PAGES).T
    own_u = c.nr_unmovable - c.nr_polluting_unmovable
    own_r = c.nr_reclaimable - c.nr_polluting_reclaimable
    placed = c.nr_polluting_unmovable + c.nr_polluting_reclaimable + c.nr_pinned
    lengths = np.stack(
        [
            own_u,
            cap_u - own_u,
            own_r,
            cap_r - own_r,
            c.nr_polluting_unmovable,
            c.nr_polluting_reclaimable,
            c.nr_pinned,
            cap_m - placed,
        ],
        axis=1,
    )
    codes = (UNMOVABLE, FREE, RECLAIMABLE, FREE, UNMOVABLE, RECLAIMABLE, PINNED, FREE)
    page_state = _fill_pools(xp, seeds, pool, lengths, codes)
    # The file takes the lowest free PFNs of the MOVABLE blocks; odd file offsets are punched.
    candidate = (pool == _POOL_MOVABLE_BLOCK) & (page_state == FREE)
    del pool
    file_offset_plus_one = xp.cumsum(
        candidate, axis=1, dtype=xp.int64 if params.nr_pages >= 2**31 else xp.int32
    )
    in_file = candidate & (file_offset_plus_one <= xp.asarray(c.nr_file_pages)[:, None])
    kept = in_file & ((file_offset_plus_one & 1) == 1)  # offsets 0, 2, 4, ...
    page_state[kept] = MOVABLE
    return page_state, mt


def _free_quarter(xp: ModuleType, params: FragmentParams, c: FragmentCounts) -> tuple[Array, Array]:
    nr_zones = params.nr_zones
    nr_blocks = params.nr_pages // PAGEBLOCK_NR_PAGES
    seeds = _seeds(xp, params)
    mt = _pageblock_types(xp, seeds, c)
    folio = _place_folios(xp, seeds, mt, c.nr_folios, params.folio_orders, FREE_QUARTER_KEPT)
    in_folio = (folio != 0).reshape(nr_zones * nr_blocks, PAGEBLOCK_NR_PAGES)
    folio_pages = in_folio.sum(axis=1, dtype=xp.int64).reshape(nr_zones, nr_blocks)
    # Each block keeps its folio pages plus random base pages up to 128 allocated pages.
    scratch = xp.empty((nr_zones, params.nr_pages), dtype=xp.uint64)
    words = rng.random_words(
        xp,
        seeds,
        _STREAM_KEPT,
        params.nr_pages,
        group=in_folio.reshape(nr_zones, -1),
        group_bits=1,
        scratch=scratch,
    )
    need = (FREE_QUARTER_KEPT - folio_pages).reshape(-1)
    first = rng.runs_from_words(
        words.reshape(nr_zones * nr_blocks, PAGEBLOCK_NR_PAGES),
        xp.stack([need, PAGEBLOCK_NR_PAGES - need], axis=1),
        scratch=scratch,
    )
    del words, scratch
    kept_base = first == 0
    pool = xp.where(
        kept_base.reshape(nr_zones, params.nr_pages), _pool_of_blocks(xp, mt), _POOL_OTHER
    )
    pool = pool.astype(xp.uint8)
    cap_u, cap_r, cap_m = (c.nr_pageblocks * FREE_QUARTER_KEPT).T
    own_u = c.nr_unmovable - c.nr_polluting_unmovable
    own_r = c.nr_reclaimable - c.nr_polluting_reclaimable
    folio_total = c.nr_folio_pages
    in_m = c.nr_polluting_unmovable + c.nr_polluting_reclaimable + c.nr_pinned
    lengths = np.stack(
        [
            own_u,
            cap_u - own_u,  # spare U slots: movable base pages
            own_r,
            cap_r - own_r,
            c.nr_polluting_unmovable,
            c.nr_polluting_reclaimable,
            c.nr_pinned,
            cap_m - folio_total - in_m,
            params.nr_pages - (cap_u + cap_r + cap_m) + folio_total,  # free, and folio pages
        ],
        axis=1,
    )
    codes = (
        UNMOVABLE,
        MOVABLE,
        RECLAIMABLE,
        MOVABLE,
        UNMOVABLE,
        RECLAIMABLE,
        PINNED,
        MOVABLE,
        FREE,
    )
    page_state = _fill_pools(xp, seeds, pool, lengths, codes)
    page_state |= folio
    return page_state, mt


_LAYOUT_FUNCTIONS = {
    "random_mix": _random_mix,
    "holepunch": _holepunch,
    "free_quarter": _free_quarter,
}


def fragment(xp: ModuleType, params: FragmentParams) -> tuple[Array, Array]:
    """Initial ``(page_state (Z, N) uint8, pageblock_migratetype (Z, B) int8)`` on ``xp``.

    Validates ``params`` and raises ``ValueError`` naming the field or the fractions that
    cannot be laid out. Exact counts: :func:`fragment_counts`.
    """
    counts = fragment_counts(params)
    return _LAYOUT_FUNCTIONS[params.layout](xp, params, counts)


def make_zone_state(
    xp: ModuleType, params: FragmentParams, min_free_kbytes: Any, watermark_scale_factor: Any
) -> ZoneState:
    """A :class:`ZoneState` from :func:`fragment`, with watermarks for N managed pages.

    ``min_free_kbytes`` and ``watermark_scale_factor`` are scalars or ``(Z,)`` arrays;
    watermarks follow kernels.zone.setup_per_zone_wmarks (one zone holding all lowmem).
    """
    page_state, pageblock_mt = fragment(xp, params)
    shape = (params.nr_zones,)
    managed = np.full(shape, params.nr_pages, dtype=np.int64)
    wmarks = setup_per_zone_wmarks(
        managed,
        np.broadcast_to(to_numpy(min_free_kbytes).astype(np.int64), shape),
        np.broadcast_to(to_numpy(watermark_scale_factor).astype(np.int64), shape),
    )
    wmin, wlow, whigh = (xp.asarray(w, dtype=xp.int64) for w in wmarks)
    return ZoneState(
        page_state=page_state,
        pageblock_migratetype=pageblock_mt,
        wmark_min=wmin,
        wmark_low=wlow,
        wmark_high=whigh,
    )


# --------------------------------------------------------------------------------------
# Pins on top of a given zone (snapshots of real machines)

_STREAM_PINS = 4  # rng stream of inject_pins; the layouts above use 1-3 and 16+


def inject_pins(
    xp: ModuleType,
    page_state: Array,
    pageblock_migratetype: Array,
    seeds: Any,
    pinned_fraction: Any,
) -> Array:
    """Pin a seeded random share of the movable base pages in MOVABLE pageblocks.

    GUP/RDMA pins cannot be seen in /proc (kernel-model.md 9.6), so a zone read from a
    real machine gets them from the workload. In zone ``z`` exactly
    ``floor(pinned_fraction[z] * m[z] + 0.5)`` of its ``m[z]`` eligible pages turn
    PINNED: base MOVABLE pages (code 1; large-folio pages are never pinned here) in
    pageblocks of type MOVABLE. The chosen pages are the eligible ones with the smallest
    keys of stream ``_STREAM_PINS`` of ``seeds[z]`` (:mod:`kernels.rng`), so a zone's
    pins depend only on its own seed, page states and block types, on both backends.

    ``page_state`` (Z, N) uint8, ``pageblock_migratetype`` (Z, N / 512) int8, ``seeds``
    (Z,) uint64, ``pinned_fraction`` scalar or (Z,) in [0, 1]. Returns a new array.
    """
    nr_zones, nr_pages = page_state.shape
    fraction = np.broadcast_to(to_numpy(pinned_fraction).astype(np.float64), (nr_zones,))
    if not ((fraction >= 0.0) & (fraction <= 1.0)).all():
        raise ValueError(f"pinned_fraction must be in [0, 1], got {fraction.tolist()}")
    movable_block = _per_page(pageblock_migratetype == int(MigrateType.MOVABLE))
    eligible = (page_state == MOVABLE) & movable_block
    del movable_block
    nr_eligible = to_numpy(eligible.sum(axis=1, dtype=xp.int64))
    nr_pins = _round_count(fraction, nr_eligible)
    out = page_state.copy()
    if not nr_pins.any():
        return out
    scratch = xp.empty((nr_zones, nr_pages), dtype=xp.uint64)
    words = rng.random_words(
        xp,
        xp.asarray(to_numpy(seeds).astype(np.uint64).reshape(nr_zones)),
        _STREAM_PINS,
        nr_pages,
        group=~eligible,
        group_bits=1,
        scratch=scratch,
    )
    run = rng.runs_from_words(
        words, np.stack([nr_pins, nr_pages - nr_pins], axis=1), scratch=scratch
    )
    del words, scratch
    out[run == 0] = PINNED  # the first nr_pins pages in key order are all eligible
    return out
