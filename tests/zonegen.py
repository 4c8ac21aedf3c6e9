"""Random small zones for the exactness tests: every page kind, folios, all layouts."""

from __future__ import annotations

import numpy as np

from kernels.zone import (
    FREE,
    MOVABLE,
    PAGEBLOCK_NR_PAGES,
    PINNED,
    RECLAIMABLE,
    UNMOVABLE,
    MigrateType,
    folio_head_code,
    folio_tail_code,
)

P = PAGEBLOCK_NR_PAGES
LAYOUTS = ("uniform", "blocky", "runs", "holes", "folio_heavy", "pinned_heavy")


def random_zone(
    rng: np.random.Generator, nr_blocks: int, layout: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One zone: (page_state (N,) uint8, pageblock_migratetype (B,) int8)."""
    layout = layout or LAYOUTS[rng.integers(len(LAYOUTS))]
    n = nr_blocks * P
    mt = rng.choice(
        [MigrateType.MOVABLE, MigrateType.UNMOVABLE, MigrateType.RECLAIMABLE],
        size=nr_blocks,
        p=[0.8, 0.12, 0.08],
    ).astype(np.int8)
    s = np.zeros(n, dtype=np.uint8)
    p_free = rng.uniform(0.05, 0.95)
    p_pin = {"pinned_heavy": rng.uniform(0.3, 0.9)}.get(
        layout, rng.choice([0.0, 0.0, rng.uniform(0, 0.1)])
    )
    p_unmov = rng.choice([0.0, rng.uniform(0, 0.05)])
    folio_frac = {"folio_heavy": rng.uniform(0.3, 0.9)}.get(
        layout, rng.choice([0.0, rng.uniform(0, 0.4)])
    )
    for b in range(nr_blocks):
        lo = b * P
        if layout == "blocky" and rng.random() < 0.5:
            s[lo : lo + P] = FREE if rng.random() < 0.5 else MOVABLE
            continue
        kinds = rng.random(P)
        blk = np.full(P, MOVABLE, dtype=np.uint8)
        if mt[b] == MigrateType.MOVABLE:
            blk[kinds < p_free] = FREE
            blk[(kinds >= p_free) & (kinds < p_free + p_pin * (1 - p_free))] = PINNED
            pol = rng.random(P) < p_unmov
            blk[pol] = UNMOVABLE
        else:
            blk[kinds < p_free] = FREE
            blk[kinds >= p_free] = UNMOVABLE if mt[b] == MigrateType.UNMOVABLE else RECLAIMABLE
            blk[(kinds >= p_free) & (rng.random(P) < 0.2)] = MOVABLE
        if layout == "runs":
            # long runs: sort chunks so free pages cluster
            for c0 in range(0, P, 64):
                blk[c0 : c0 + 64] = np.sort(blk[c0 : c0 + 64])
        if layout == "holes":
            blk[1::2] = FREE
        s[lo : lo + P] = blk
        if mt[b] == MigrateType.MOVABLE and folio_frac > 0:
            # Drop folios of random orders onto aligned slots that hold no pinned page.
            budget = int(folio_frac * P)
            while budget > 0:
                k = int(rng.integers(1, 10))
                size = 1 << k
                if size > budget and k > 1:
                    k = max(1, int(np.log2(max(budget, 2))))
                    size = 1 << k
                start = lo + int(rng.integers(0, P // size)) * size
                seg = s[start : start + size]
                if np.any(seg > PINNED) or np.any(seg == PINNED) or np.any(seg == UNMOVABLE):
                    budget -= size
                    continue
                s[start] = folio_head_code(k)
                s[start + 1 : start + size] = folio_tail_code(k)
                budget -= size
    return s, mt


def random_batch(seed: int, nr_zones: int, nr_blocks: int, layout: str | None = None):
    rng = np.random.default_rng(seed)
    zones = [random_zone(rng, nr_blocks, layout) for _ in range(nr_zones)]
    return np.stack([z[0] for z in zones]), np.stack([z[1] for z in zones])
