"""The cube's dask graph: one load+composite task per chunk and modality (not one per item, band, chunk and step),
with values bit for bit those of the whole-grid lazy pipeline the cube used before (kept here as the reference)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crofuse import OPTICAL_BANDS, SAR_BANDS
from crofuse.cube import CubeConfig
from tests.fixtures.cube import inner_bbox

pytestmark = pytest.mark.timeout(300)


def _config(stac_api: str, out: Path, **kw) -> CubeConfig:
    from crofuse.synthetic import WUHAN

    from tests.fixtures.catalog import SMALL_CATALOG

    return CubeConfig(**({"city": "Wuhan", "year": 2022, "aoi": inner_bbox(WUHAN, SMALL_CATALOG.size_km, margin=0.05),
                          "catalog": stac_api, "output": out, "chunk_size": 64} | kw))


def _setup(cfg: CubeConfig):
    from crofuse.cube import target_geobox
    from crofuse.cube.search import search_season

    items = search_season(cfg)
    return items, target_geobox(cfg.area, resolution=cfg.resolution, epsg=cfg.epsg)


def _reference(cfg: CubeConfig, items, gb) -> dict[str, np.ndarray]:
    """The previous graph: whole-grid lazy loads (one task per item, band and chunk), the compositor on dask."""
    import dask

    from crofuse.cube import composite as c
    from crofuse.cube.loaders import load_assets

    prof, sp = cfg.catalog_profile, cfg.sar_source_profile
    common = {"loader": cfg.loader, "chunk_size": cfg.chunk_size}
    dn = load_assets(items.optical, list(prof.optical_assets.values()), gb, dtype="uint16", nodata=0,
                     resampling=cfg.resampling, **common).assign_coords(band=list(OPTICAL_BANDS))
    scl = load_assets(items.optical, [prof.scl_asset], gb, dtype="uint8", nodata=0, resampling="nearest", **common)
    refl, imp_o = c.optical_reflectance(dn, scl.isel(band=0, drop=True), offsets=c.dn_offsets(items.optical, prof),
                                        scl_mask=cfg.scl_mask)
    refl = c.mosaic_acquisitions(refl.drop_vars("item"), c.acquisition_keys(items.optical))
    optical, ocount = c.optical_composite(refl, reducer=cfg.optical_reducer)
    lin = load_assets(items.sar, list(sp.sar_assets.values()), gb, dtype="float32", nodata=float("nan"),
                      resampling=cfg.resampling, **common).assign_coords(band=list(SAR_BANDS))
    lin, imp_s = c.sar_linear(lin, nodata=sp.sar_nodata)
    lin = c.mosaic_acquisitions(lin.drop_vars("item"), c.acquisition_keys(items.sar))
    sar, scount = c.sar_composite(lin)
    optical, sar = optical.transpose("band", "y", "x"), sar.transpose("band", "y", "x")
    valid = (ocount > 0) & optical.notnull().all("band") & (scount > 0) & sar.notnull().all("band")
    order = ("time", "band", "window_y", "window_x")
    lazy = {
        "optical": optical, "sar": sar, "optical_count": ocount, "sar_count": scount, "valid": valid,
        "optical_flagged": c.flagged_count(imp_o), "sar_flagged": c.flagged_count(imp_s),
        "optical_impossible": c.impossible_windows(imp_o, cfg.chunk_size).transpose(*order),
        "sar_impossible": c.impossible_windows(imp_s, cfg.chunk_size).transpose(*order),
    }
    (out,) = dask.compute({k: v.data for k, v in lazy.items()}, scheduler="synchronous")
    return out


@pytest.mark.parametrize("loader", ["odc-stac", "stackstac"])
def test_per_chunk_graph_gives_the_values_of_the_whole_grid_graph(stac_api, tmp_path: Path, loader: str):
    """Every written array (composites, counts, valid, flags, impossible-value windows) is bit for bit what the
    whole-grid lazy pipeline computes from the same items, edge chunks included."""
    import dask

    from crofuse.cube.build import assemble

    cfg = _config(stac_api, tmp_path, loader=loader)
    items, gb = _setup(cfg)
    assert gb.shape[0] % cfg.chunk_size and gb.shape[1] % cfg.chunk_size, "the grid has partial edge chunks"
    ref = _reference(cfg, items, gb)
    ds = assemble(cfg, items, gb, [])
    (got,) = dask.compute({k: ds[k].data for k in ref}, scheduler="synchronous")
    for name, want in ref.items():
        assert got[name].dtype == want.dtype and got[name].shape == want.shape, name
        assert np.array_equal(got[name], want, equal_nan=True), f"{name} differs from the whole-grid graph"
    assert np.isfinite(got["optical"]).mean() > 0.9 and got["optical_count"].max() >= 2  # real data compared


def test_task_count_is_a_small_constant_per_chunk(stac_api, tmp_path: Path):
    """At most 16 tasks per chunk (one load+composite per modality, its outputs, valid, in_aoi) whatever the
    number of items; each chunk task produces one chunk, never the whole grid (memory stays flat)."""
    import dataclasses

    from crofuse.cube.build import assemble

    cfg = _config(stac_api, tmp_path)
    items, gb = _setup(cfg)
    assert len(items.optical) >= 2 and len(items.sar) >= 2
    ds = assemble(cfg, items, gb, [])
    n_chunks = len(ds["optical"].data.to_delayed().ravel())
    assert n_chunks >= 9
    tasks = len(ds.__dask_graph__())
    assert tasks <= 16 * n_chunks + 8, f"{tasks} tasks for {n_chunks} chunks"
    fewer = dataclasses.replace(items, optical=items.optical[:1], sar=items.sar[:1])
    assert len(assemble(cfg, fewer, gb, []).__dask_graph__()) == tasks, "the task count depends on the item count"
    for name in ("optical", "sar", "valid", "optical_count", "sar_flagged"):
        assert max(max(c) for c in ds[name].chunks[-2:]) == cfg.chunk_size, name
