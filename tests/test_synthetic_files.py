"""Rebuilds are idempotent and safe, label rasters match the generated growth, the patch export has the WHU-IS layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crofuse.synthetic import WUHAN, SampleConfig, build_catalog, ground_truth
from tests.fixtures.catalog import SMALL_CATALOG

TINY = SampleConfig(cities=(WUHAN,), years=(2022,), size_km=1.0, seed=7)


def _read(path: str | Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        return src.read()


def test_rebuild_reuses_finished_items_and_redoes_broken_ones(tmp_path: Path) -> None:
    tmp_path = tmp_path / "wuhan-1.0km"  # a dot in the folder name must not make pystac take it for a file
    first = build_catalog(tmp_path, TINY, workers=1)
    assert (tmp_path / "catalog.json").exists() and (tmp_path / "sentinel-2-l2a" / "collection.json").exists()
    n = sum(first.items.values())
    assert first.written == n and first.reused == 0
    again = build_catalog(tmp_path, TINY, workers=1)
    assert again.written == 0 and again.reused == n
    s2 = sorted((tmp_path / "sentinel-2-l2a").glob("*/*.json"))
    s1 = sorted((tmp_path / "sentinel-1-rtc").glob("*/*.json"))
    before = s1[0].read_bytes()
    s2[0].write_text(s2[0].read_text()[:100])  # a half-written item JSON
    (s1[0].parent / "vh.tif").unlink()  # an item whose asset went missing
    io = next((tmp_path / "io-lulc-annual-v02").glob("*/*.tif"))
    good = io.read_bytes()
    io.write_bytes(good[:5000] + bytes(100) + good[5100:])  # damaged in place, same size: file:checksum differs
    assert not list(tmp_path.rglob("*.tmp*"))  # no temporary file was left behind
    fixed = build_catalog(tmp_path, TINY, workers=1)
    assert fixed.written == 3 and fixed.reused == n - 3
    assert s1[0].read_bytes() == before  # regenerated identically: deterministic
    assert io.read_bytes() == good
    json.loads(s2[0].read_text())
    # other settings: every item is rebuilt (fingerprint), none is reused by mistake
    other = build_catalog(tmp_path, SampleConfig(**{**TINY.__dict__, "enl": 6.0}), workers=1)
    assert other.written == n


def test_label_rasters_match_generated_growth(sample_catalog: Path) -> None:
    """v2 label items: ``impervious`` is the reference (an annotator's label, with co-registration error and time
    lag), ``impervious_exact`` the exact truth; growth is the exact change."""
    labels = {}
    for year in SMALL_CATALOG.years:
        item = json.loads((sample_catalog / "labels" / f"labels_wuhan_{year}" / f"labels_wuhan_{year}.json").read_text())
        labels[year] = {k: _read(a["href"])[0] for k, a in item["assets"].items()}
        truth = ground_truth(SMALL_CATALOG, "wuhan", year)
        np.testing.assert_array_equal(labels[year]["impervious"], truth.reference)
        np.testing.assert_array_equal(labels[year]["impervious_exact"], truth.label)
        np.testing.assert_array_equal(labels[year]["growth"], truth.growth)
        p = item["properties"]
        assert p["crofuse:growth_km2"] == pytest.approx(truth.growth.sum() * 1e-4)
        assert p["crofuse:reference_agreement"] == pytest.approx(float((truth.reference == truth.label).mean()))
        assert 0.85 < p["crofuse:reference_agreement"] < 1.0  # noisy like a real reference, not a different map
        shift = np.hypot(*p["crofuse:reference_shift_px"])
        assert shift == pytest.approx(SMALL_CATALOG.difficulty.label_shift_px, abs=1e-3)
        assert p["crofuse:generator"] == "3" and p["crofuse:palette"] == "humid-subtropical-china"
    change = (labels[2022]["impervious_exact"] == 1) & (labels[2021]["impervious_exact"] == 0)
    np.testing.assert_array_equal(change, labels[2022]["growth"] == 1)
    assert change.sum() > 0


def test_parallel_build_equals_serial_build(tmp_path: Path) -> None:
    from crofuse.synthetic import NANJING

    cfg = SampleConfig(cities=(WUHAN, NANJING), years=(2021,), size_km=0.6, seed=1, months=(6,))
    serial = build_catalog(tmp_path / "serial", cfg, workers=1)
    parallel = build_catalog(tmp_path / "parallel", cfg, workers=2)
    assert serial.items == parallel.items and parallel.written == sum(parallel.items.values())
    for a in sorted((tmp_path / "serial").rglob("*.tif"))[::7]:
        b = tmp_path / "parallel" / a.relative_to(tmp_path / "serial")
        np.testing.assert_array_equal(_read(a), _read(b))


def test_cli_build_prints_what_was_built(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from crofuse_cli import app

    result = CliRunner().invoke(
        app, ["sample-catalog", "build", str(tmp_path), "--cities", "wuhan", "--years", "2022", "--size-km", "1", "--seed", "7",
                     "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    assert "sentinel-2-l2a 6" in result.output and "wuhan: 1.00 km2" in result.output
    assert "impervious fraction" in result.output
    bad = CliRunner().invoke(app, ["sample-catalog", "build", str(tmp_path), "--cities", "paris", "--no-progress"])
    assert bad.exit_code != 0 and "unknown city 'paris'" in bad.output


def test_cli_build_with_a_sentinel1_gap_month(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from crofuse_cli import app

    args = ["sample-catalog", "build", str(tmp_path), "--cities", "wuhan", "--years", "2022", "--months", "5,6", "--size-km", "1",
            "--seed", "7", "--s1-gap-months", "2022-06", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    months = {json.loads(p.read_text())["properties"]["datetime"][:7]
              for p in (tmp_path / "sentinel-1-rtc").glob("*/*.json")}
    assert months == {"2022-05"}, months  # May has passes, the gap month June has none
    bad = CliRunner().invoke(app, [*args[:-3], "--s1-gap-months", "June", "--no-progress"])
    assert bad.exit_code != 0 and "not 'YYYY-MM'" in bad.output


def test_overcast_season_and_sar_gap(tmp_path: Path) -> None:
    """Options for consumers' failure tests: every S2 pass cloudy, and a month without any Sentinel-1 pass."""
    cfg = SampleConfig(cities=(WUHAN,), years=(2022,), size_km=1.0, seed=7, overcast=True, s1_gap_months=("2022-06",))
    summary = build_catalog(tmp_path, cfg, workers=1)
    assert summary.items == {"sentinel-2-l2a": 6, "sentinel-1-rtc": 0, "labels": 1, "esa-worldcover": 2,
                             "io-lulc-annual-v02": 1}
    for p in (tmp_path / "sentinel-2-l2a").glob("*/*.json"):
        item = json.loads(p.read_text())
        assert item["properties"]["eo:cloud_cover"] == 100.0
        assert set(np.unique(_read(item["assets"]["SCL"]["href"]))) <= {0, 8, 9}
    # the empty collection is still listed, so a search for it finds nothing rather than failing
    coll = json.loads((tmp_path / "sentinel-1-rtc" / "collection.json").read_text())
    assert coll["id"] == "sentinel-1-rtc" and not [x for x in coll["links"] if x["rel"] == "item"]
