"""Config tree: every group option composes and validates; bad input names its key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from kernels.zone import default_min_free_kbytes
from sweep.config import (
    CONF_DIR,
    GROUPS,
    PROFILES,
    ConfigError,
    SweepConfig,
    compose_config,
    register_configs,
    sweep_cells,
    to_config,
    validate,
)
from sweep.expand import check_feasible, compact_node_params

ZONE_PAGES = {
    "tiny": 4096,
    "1g": 262144,
    "1g5": 393216,
    "3g": 786432,
    "16g": 4194304,
    "128g": 33554432,
}


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


def test_config_groups_have_the_documented_options() -> None:
    assert set(GROUPS) == {p.name for p in Path(CONF_DIR).iterdir() if p.is_dir()}
    assert group_options("zone") == sorted(ZONE_PAGES)
    assert group_options("kernel") == ["v4_12", "v6_19"]
    assert group_options("policy") == [
        "default",
        "isolate_pinned",
        "kcompactd_none",
        "proactive_demand",
        "proactive_score",
        "reactive",
        "regions",  # seed 002
        "regions_delayed",  # seed 002
        "regions_sorted",  # seed 002
        "stop_below_watermark",
    ]
    assert group_options("workload") == [
        "bulk_alloc",
        "compact_node",
        "holepunch",
        "pinned",
        "regions",  # seed 002
        "snapshot",
        "stress_highalloc",
    ]


@pytest.mark.parametrize(
    "override", [f"{group}={option}" for group in GROUPS for option in group_options(group)]
)
def test_every_group_option_composes_and_validates(override: str) -> None:
    if override == "workload=snapshot":  # needs a snapshot file: tests/test_snapshot_workload.py
        with pytest.raises(ConfigError, match="workload.path is missing"):
            compose_config([override])
        return
    group, option = override.split("=")
    if group == "policy" and option not in ("default", "isolate_pinned"):
        # kcompactd policies only mean something to the time-stepped workloads
        with pytest.raises(ConfigError, match="^policy.* has no effect with workload="):
            compose_config([override])
        config = compose_config([override, "workload=holepunch"])
    else:
        config = compose_config([override])
    assert isinstance(config, SweepConfig)
    assert getattr(config, group).name == option
    check_feasible(config)


def test_defaults() -> None:
    config = compose_config([])
    assert (config.kernel.profile, config.policy.skip_pinned, config.workload.name) == (
        "v6_19",
        True,
        "compact_node",
    )
    assert (config.order, config.replicates, config.seed, config.backend) == (-1, 4, 0, "auto")
    assert config.check_invariants is True
    assert config.workload.folio_orders == [2, 4, 9]


def test_zone_presets_sizes() -> None:
    for name, nr_pages in ZONE_PAGES.items():
        zone = compose_config([f"zone={name}"]).zone
        assert (zone.nr_pages, zone.pageblock_order, zone.max_order) == (nr_pages, 9, 10)
        assert zone.min_free_kbytes is None and zone.watermark_scale_factor == 10


def test_policy_presets() -> None:
    assert compose_config(["policy=default"]).policy.skip_pinned is True
    assert compose_config(["policy=isolate_pinned"]).policy.skip_pinned is False
    assert compose_config(["policy.skip_pinned=false"]).policy.skip_pinned is False


def test_yaml_presets_extend_the_registered_schemas() -> None:
    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["zone=16g", "kernel=v4_12"])
    config = to_config(cfg)
    validate(config)
    assert type(config.zone).__name__ == "ZoneConfig"
    assert type(config.workload).__name__ == "CompactNodeConfig"
    assert PROFILES[config.kernel.profile].name == "V4_12"


def test_expand_builds_per_zone_params() -> None:
    import numpy as np

    config = compose_config(["zone=tiny", "replicates=3", "policy=isolate_pinned", "kernel=v4_12"])
    params = compact_node_params(config, np)
    assert params.nr_zones == 3
    assert params.fragment.nr_pages == 4096 and params.fragment.seed.shape == (3,)
    assert params.fragment.seed.dtype == np.uint64 and len(set(params.fragment.seed.tolist())) == 3
    assert params.compact.skip_pinned.tolist() == [False] * 3
    assert params.compact.profile == PROFILES["v4_12"]
    expected = default_min_free_kbytes(lowmem_kbytes=4096 * 4, profile=PROFILES["v4_12"])
    assert params.min_free_kbytes.tolist() == [expected] * 3
    explicit = compact_node_params(compose_config(["zone.min_free_kbytes=2048"]), np)
    assert explicit.min_free_kbytes.tolist() == [2048] * 4


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["order=11"], "order=11 is out of range [-1, 10]"),
        (["order=3"], "order=3 cannot be used with workload=compact_node"),
        (["workload.pinned_fraction=1.5"], "workload.pinned_fraction=1.5 is out of range [0, 1]"),
        (["workload.free_fraction=-0.1"], "workload.free_fraction=-0.1 is out of range [0, 1]"),
        (
            ["workload.free_fraction=0.9", "workload.pinned_fraction=0.2"],
            "workload.pinned_fraction = 1.14 exceeds 1",
        ),
        (["zone.nr_pages=256"], "zone.nr_pages=256 is smaller than one pageblock"),
        (["zone.nr_pages=1000"], "zone.nr_pages=1000 is not a multiple of the pageblock size"),
        (["zone.pageblock_order=10"], "zone.pageblock_order=10 is not supported"),
        (["zone.max_order=11"], "zone.max_order=11 is not supported"),
        (["zone.watermark_scale_factor=0"], "zone.watermark_scale_factor=0 is out of range"),
        (["kernel=v4_12", "zone.watermark_scale_factor=2000"], "zone.watermark_scale_factor=2000"),
        (["zone.min_free_kbytes=-1"], "zone.min_free_kbytes=-1 is out of range"),
        (["workload.layout=swiss_cheese"], "workload.layout='swiss_cheese' is not one of"),
        (["workload.layout=holepunch"], "workload.folio_fraction=0.25 must be 0"),
        (["workload.folio_orders=[0]"], "workload.folio_orders=[0]"),
        (["workload.folio_orders=[4,4]"], "workload.folio_orders=[4, 4] repeats an order"),
        (["workload.layout=free_quarter"], "workload.folio_orders=[2, 4, 9]: folio order 9"),
        (["replicates=0"], "replicates=0 must be >= 1"),
        (["seed=-1"], "seed=-1 is out of range"),
        (["backend=gpu"], "backend='gpu' is not one of auto, numpy, cupy"),
        (["kernel.profile=v5_10"], "kernel.profile='v5_10' is not one of v4_12, v6_19"),
        (
            ["workload=bulk_alloc", "zone=1g5", "policy.sorted_freelists=true"],
            "policy.sorted_freelists=true is not modelled with workload=bulk_alloc",
        ),
        # rejected by Hydra/OmegaConf while composing
        (
            ["policy.skip_pined=false"],
            "policy.skip_pined is not a config key (did you mean policy.skip_pinned?)",
        ),
        (["replicate=3"], "replicate is not a config key (did you mean replicates?)"),
        (["+foo=1"], "foo is not a config key"),
        (["+zone.colour=red"], "zone.colour is not a config key"),
        (["replicates=many"], "replicates: Value 'many'"),
        (["policy.skip_pinned=maybe"], "policy.skip_pinned: Value 'maybe' is not a valid bool"),
        (["zone.nr_pages=1.5"], "zone.nr_pages: Value '1.5'"),
        (["zone=17g"], "zone=17g is not a known option (available: 128g, 16g, 1g, 1g5, 3g, tiny)"),
        (["kernel=v5_10"], "kernel=v5_10 is not a known option"),
        (["zone=base_zone"], "zone.name is missing"),
        (["order=1,2"], "Ambiguous value for argument 'order=1,2'"),
        (["order"], "Error parsing override 'order'"),
    ],
)
def test_bad_input_fails_with_one_line_naming_the_key(overrides: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        compose_config(overrides)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    key = overrides[-1].lstrip("+").split("=")[0]
    assert key in message


def test_unfit_layout_is_reported_before_compute() -> None:
    # Every key is in range, but half the pages are unmovable and unpolluting, so the
    # one-pageblock zone's only pageblock is UNMOVABLE and the movable pages have none.
    config = compose_config(
        [
            "zone.nr_pages=512",
            "workload.unmovable_fraction=0.5",
            "workload.pollution=0",
            "workload.free_fraction=0.1",
            "workload.folio_fraction=0",
        ]
    )
    with pytest.raises(ConfigError) as info:
        check_feasible(config)
    assert str(info.value).startswith("workload: layout 'random_mix' cannot fit")
    assert "\n" not in str(info.value)


def test_sweep_cells_expand_like_the_basic_sweeper() -> None:
    cells = sweep_cells(["zone=tiny", "policy=default,isolate_pinned", "seed=range(3)"])
    assert len(cells) == 6
    assert cells[0] == ["zone=tiny", "policy=default", "seed=0"]
    assert cells[-1] == ["zone=tiny", "policy=isolate_pinned", "seed=2"]
    with pytest.raises(ConfigError, match="workload.pinned_fraction=1.5"):
        for cell in sweep_cells(["workload.pinned_fraction=0.1,1.5"]):
            compose_config(cell)
