"""Experiment runner and report: seed statistics, the "within noise" rule, table layout, and a micro-suite end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from crofuse.errors import ConfigError, DataError
from crofuse.experiments import PROFILES, SUITES, get_profile, get_suite, render_report
from crofuse.experiments.profiles import DataSettings
from crofuse.experiments.records import SCHEMA, load_records, record_path, write_json_atomic
from crofuse.experiments.report import aggregate, best_marks, format_cell
from crofuse.experiments.stats import compare, rank_chain, summarize
from crofuse.experiments.suites import model_options




# ---- statistics ----------------------------------------------------------------------------------------------------


def test_summary_is_mean_and_sample_std() -> None:
    s = summarize([0.90, 0.92, 0.94])
    assert s.mean == pytest.approx(0.92)
    assert s.std == pytest.approx(0.02)  # ddof=1: sqrt((0.02² + 0 + 0.02²) / 2)
    assert s.n == 3 and s.has_spread
    one = summarize([0.5])
    assert one.mean == 0.5 and math.isnan(one.std) and not one.has_spread
    assert summarize([0.1, float("nan"), 0.3]).n == 2  # NaN (e.g. an empty class) is left out


def test_within_noise_triggers_only_inside_the_spread() -> None:
    a = summarize([0.90, 0.92, 0.94])  # mean 0.92, std 0.02
    close = summarize([0.905, 0.905, 0.905])  # Δ 0.015 <= 0.02
    far = summarize([0.85, 0.86, 0.87])  # Δ 0.06 > 0.02
    assert compare(a, close) == "≈" and compare(close, a) == "≈"
    assert compare(a, far) == ">" and compare(far, a) == "<"
    assert compare(a, summarize([0.5])) == "?"  # one seed: no spread, no ranking
    # the larger of the two spreads counts, whichever method it belongs to
    tight = summarize([0.95, 0.95, 0.95])
    assert compare(tight, a) == ">"  # Δ 0.03 > 0.02
    assert compare(summarize([0.93, 0.93, 0.93]), a) == "≈"  # Δ 0.01
    # lower is better (e.g. an error): 0.15 vs 0.25, Δ 0.1 > std 0.0707 -> a is clearly better
    assert compare(summarize([0.1, 0.2]), summarize([0.2, 0.3]), higher_is_better=False) == ">"


def test_rank_chain_and_best_marks() -> None:
    sums = {"a": summarize([0.90, 0.92, 0.94]), "b": summarize([0.905] * 3), "c": summarize([0.80] * 3)}
    assert rank_chain(sums, labels={"a": "A", "b": "B", "c": "C"}) == "A ≈ B > C"
    assert best_marks(sums) == {"a": "≈", "b": "≈", "c": ""}
    clear = {"a": summarize([0.90, 0.92, 0.94]), "c": summarize([0.80] * 3)}
    assert best_marks(clear) == {"a": "best", "c": ""}
    single = {"a": summarize([0.9]), "c": summarize([0.8])}
    assert best_marks(single) == {"a": "?", "c": "?"}
    assert rank_chain(single) == "a ? c"


def test_cells_are_formatted_like_the_paper() -> None:
    assert format_cell(summarize([0.90, 0.92, 0.94]), "miou") == "0.9200 ± 0.0200"
    assert format_cell(summarize([0.90, 0.92, 0.94]), "oa") == "92.00 ± 2.00%"
    assert format_cell(summarize([0.9]), "mean_f1") == "0.9000 (n=1)"
    assert format_cell(None, "miou") == "–"


# ---- report from hand-written records ------------------------------------------------------------------------------


def _metrics(miou: float, oa: float, f1: float, **extra: float) -> dict[str, float]:
    return {"miou": miou, "oa": oa, "mean_f1": f1, **extra}


def _record(suite: str, method: str, seed: int, metrics: dict[str, float], **fields: Any) -> dict[str, Any]:
    return {
        "schema": SCHEMA, "suite": suite, "method": method, "label": method, "seed": seed, "metrics": metrics,
        "profile": {"name": "cpu-small", "benchmark": True}, "timings": {"total_s": 60.0}, **fields,
    }


def _write(results: Path, rec: dict[str, Any]) -> None:
    write_json_atomic(record_path(results, rec["suite"], rec["method"], rec["seed"]), rec)


@pytest.fixture()
def fixture_results(tmp_path: Path) -> Path:
    """Hand-written records: Table II with UNet and CroFuseNet (3 seeds), ablation with 1 seed, and transfer."""
    crofuse = [(0.80, 0.90, 0.85), (0.82, 0.92, 0.86), (0.84, 0.94, 0.87)]
    unet = [(0.70, 0.91, 0.845), (0.71, 0.91, 0.85), (0.72, 0.91, 0.855)]
    for seed, (m, o, f) in enumerate(crofuse):
        _write(tmp_path, _record("table2", "crofusenet", seed, _metrics(m, o, f, iou_impervious=0.7)))
    for seed, (m, o, f) in enumerate(unet):
        _write(tmp_path, _record("table2", "unet", seed, _metrics(m, o, f, iou_impervious=0.6)))
    _write(tmp_path, _record("ablation", "case1", 0, _metrics(0.7, 0.8, 0.75)))
    _write(tmp_path, _record("ablation", "case5", 0, _metrics(0.72, 0.81, 0.76)))
    for seed, (src, spatial, temporal) in enumerate([(0.80, 0.60, 0.80), (0.82, 0.66, 0.80)]):
        domains = {"spatial": {"name": "nanjing 2021", "metrics": _metrics(spatial, 0.8, 0.7)},
                   "temporal": {"name": "wuhan 2022", "metrics": _metrics(temporal, 0.9, 0.8)}}
        _write(tmp_path, _record("transfer", "crofusenet", seed, _metrics(src, 0.9, 0.8), domains=domains))
    return tmp_path


def test_report_lays_out_table2_with_paper_columns_and_noise_marks(fixture_results: Path) -> None:
    text = render_report(fixture_results)
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| Metrics |"))
    assert header == "| Metrics | UNet | UNet *paper* | CroFuseNet | CroFuseNet *paper* |"
    # MIoU: CroFuseNet 0.82 ± 0.02 vs UNet 0.71 ± 0.01: clearly ahead -> bold
    assert "| MIoU | 0.7100 ± 0.0100 | 0.9355 | **0.8200 ± 0.0200** | 0.9495 |" in lines
    # OA: 92 ± 2 % vs 91 ± 0 %: a 1-point gap inside a 2-point spread -> both marked ≈, nothing bold
    assert "| OA | 91.00 ± 0.00% ≈ | 97.12% | 92.00 ± 2.00% ≈ | 97.77% |" in lines
    # F1: 0.86 ± 0.01 vs 0.85 ± 0.005 -> Δ 0.01 <= 0.01 -> within noise
    assert "| F1-Score | 0.8500 ± 0.0050 ≈ | 0.9665 | 0.8600 ± 0.0100 ≈ | 0.9770 |" in lines
    assert "- This run, by MIoU: CroFuseNet > UNet" in lines
    assert "- Paper: CroFuseNet > UNet > Deeplabv3+ > HRNet > FCN > RF > SVM" in lines
    # Table III: one row per method, paper value beside each metric
    row = next(line for line in lines if line.startswith("| CroFuseNet | **0.7000"))
    assert row.startswith("| CroFuseNet | **0.7000 (n=") is False  # three seeds: a spread is shown
    assert "0.9310" in row and "96.14%" in row
    assert "Not run yet: RF, SVM, FCN, HRNet, Deeplabv3+." in text
    assert "Micro-run" not in text


def test_report_refuses_ranking_with_one_seed_and_lays_out_table4(fixture_results: Path) -> None:
    text = render_report(fixture_results)
    lines = text.splitlines()
    start = lines.index("### Table IV — ablation of CFM and MFA")
    header = next(line for line in lines[start:] if line.startswith("| Method | IS IoU | IS IoU *paper* |"))
    assert header.count("*paper*") == 11  # 8 per-class + MIoU, OA, F1 (Table IV)
    row = next(line for line in lines if line.startswith("| Case5 (CroFuseNet) |"))
    assert "0.7200 (n=1) ?" not in row  # "?" is a mark in best_marks, not printed in cells
    assert "| 0.7200 (n=1) | 0.9495 |" in row
    assert "- This run, by MIoU: Case5 (CroFuseNet) ? Case1 (no CFM, no MFA)" in lines
    assert "**" not in row  # no best claimed without a spread


def test_report_transfer_drops_are_per_seed(fixture_results: Path) -> None:
    text = render_report(fixture_results)
    # per-seed spatial drops 0.20 and 0.16 -> mean 0.18, std 0.0283
    assert "| CroFuseNet | spatial: nanjing 2021 | 0.6300 ± 0.0424 |" in text
    assert "+0.1800 ± 0.0283" in text
    assert "spatial transfer: MIoU drop +0.1800 ± 0.0283 — a drop beyond the seed spread." in text
    # temporal drops 0.00 and 0.02 -> mean 0.01 inside std 0.0141: no transfer loss claimed
    assert "temporal transfer: MIoU drop +0.0100 ± 0.0141 — within the seed spread" in text


def test_report_flags_models_that_collapsed_to_one_class(tmp_path: Path) -> None:
    for seed in range(2):
        collapsed = _metrics(0.42, 0.85, 0.9165, pa_impervious=0.0, pa_pervious=1.0)
        _write(tmp_path, _record("modality", "unet-sar", seed, collapsed))
        _write(tmp_path, _record("modality", "crofusenet", seed, _metrics(0.7 + seed / 100, 0.9, 0.8,
                                                                          pa_impervious=0.6, pa_pervious=0.9)))
    text = render_report(tmp_path)
    assert "collapsed to one class on every seed: UNet (Sentinel-1 only) (no impervious pixel predicted)." in text
    assert "CroFuseNet (S1 + S2) (no" not in text


def test_aggregate_and_bad_records(fixture_results: Path, tmp_path: Path) -> None:
    res = aggregate(load_records(fixture_results))
    assert res["table2"].methods == ["unet", "crofusenet"]
    assert res["table2"].metrics["crofusenet"]["miou"].values == (0.80, 0.82, 0.84)
    bad = tmp_path / "bad"
    (bad / "table2" / "rf").mkdir(parents=True)
    (bad / "table2" / "rf" / "seed0.json").write_text(json.dumps({"schema": "other"}))
    with pytest.raises(DataError, match="not a crofuse experiment record"):
        load_records(bad)
    with pytest.raises(DataError, match="does not exist"):
        load_records(tmp_path / "nowhere")


# ---- suites and profiles -------------------------------------------------------------------------------------------


def test_suites_and_profiles() -> None:
    assert set(SUITES) == {"table2", "ablation", "loss", "modality", "transfer"}
    assert get_suite("table2").keys == ("rf", "svm", "fcn", "hrnet", "deeplabv3plus", "unet", "crofusenet")
    assert [m.options for m in get_suite("ablation").methods][0] == {"fusion": "none", "mfa": False}
    loss = get_suite("loss")
    assert [(m.alpha, m.beta) for m in loss.methods] == [(0.0, 0.0), (1.0, 1.0), (1.0, 0.8)]
    assert get_suite("modality").method("unet-sar").paper["miou"] == pytest.approx(0.8558)
    paper, small = get_profile("paper"), get_profile("cpu-small")
    assert (paper.epochs, paper.patience, paper.batch_size, paper.lr) == (400, 50, 32, 1e-4)
    assert small.epochs < paper.epochs and small.unet_base_channels < paper.unet_base_channels
    assert model_options(get_suite("table2").method("hrnet"), paper)["width"] == 18
    assert model_options(get_suite("ablation").method("case4"), small) == {"base_channels": 8, "fusion": "concat"}
    with pytest.raises(ConfigError, match="unknown suite"):
        get_suite("table9")
    with pytest.raises(ConfigError, match="unknown profile"):
        get_profile("gpu-huge")
    with pytest.raises(ConfigError, match="epochs"):
        PROFILES["micro"].with_changes(epochs=0)


# ---- micro-suite end to end ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def micro_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Table II with RF and UNet, one seed, six 32×32 patches per split, one epoch, run for real."""
    from crofuse.experiments.runner import run_suite
    from tests.fixtures.patches import write_patch_set

    base = tmp_path_factory.mktemp("micro")
    source = write_patch_set(base / "patches", counts={"train": 6, "val": 3, "test": 3}, size=32)
    profile = PROFILES["micro"].with_changes(max_patches=6, rf_samples=1500, rf_trees=5)
    torch.set_num_threads(1)
    run_suite("table2", profile=profile, seeds=1, out=base / "results", methods=["rf", "unet"],
              source_root=source, progress=False)
    return base / "results"


def test_micro_suite_writes_records_with_metrics_config_timings_machine(micro_results: Path) -> None:
    records = {r["method"]: r for r in load_records(micro_results)}
    assert set(records) == {"rf", "unet"}
    for rec in records.values():
        for key in ("miou", "oa", "mean_f1", "iou_impervious", "pa_pervious", "ua_impervious", "f1_pervious"):
            assert 0.0 <= rec["metrics"][key] <= 1.0
        assert rec["profile"]["name"] == "micro" and rec["profile"]["benchmark"] is False
        assert rec["timings"]["train_s"] > 0 and rec["machine"]["torch"] == torch.__version__
        assert (micro_results / rec["artifacts"]["run_dir"]).is_dir()
    assert records["rf"]["metrics"]["oa"] > 0.8  # per-pixel separable fixture
    unet = records["unet"]
    assert unet["train"]["config"]["max_epochs"] == 1 and unet["train"]["options"] == {"base_channels": 4}
    assert (micro_results / unet["artifacts"]["run_dir"] / "best.safetensors").exists()


def test_micro_suite_rerun_is_idempotent_and_report_renders(micro_results: Path, tmp_path: Path) -> None:
    from crofuse.experiments.figure import render_qualitative_figure
    from crofuse.experiments.runner import run_suite

    path = record_path(micro_results, "table2", "unet", 0)
    before = path.read_text()
    rec = json.loads(before)
    run_suite("table2", profile=PROFILES["micro"].with_changes(max_patches=6, rf_samples=1500, rf_trees=5),
              seeds=1, out=micro_results, methods=["unet"], source_root=Path(rec["source"]["dataset"]),
              progress=False)
    assert path.read_text() == before  # the finished record is kept, nothing retrained
    text = render_report(micro_results)
    assert "Micro-run" in text and "| Metrics | RF | RF *paper* | UNet | UNet *paper* |" in text
    png = render_qualitative_figure(micro_results, "table2", tmp_path / "fig.png", n_patches=2)
    import matplotlib.image

    img = matplotlib.image.imread(png)
    assert img.shape[0] > 100 and img.shape[1] > 300


def test_cli_report(micro_results: Path) -> None:
    from typer.testing import CliRunner

    from crofuse_cli import app

    result = CliRunner().invoke(app, ["experiments", "report", str(micro_results), "--patches", "2"])
    assert result.exit_code == 0, result.output
    assert (micro_results / "report.md").read_text().startswith("# CroFuseNet experiments")
    assert (micro_results / "table2-qualitative.png").exists()
    bad = CliRunner().invoke(app, ["experiments", "run", "table9", "--out", str(micro_results)])
    assert bad.exit_code == 2 and "unknown suite" in bad.output


def test_transfer_micro_suite_builds_cached_sample_patch_sets(tmp_path: Path) -> None:
    """Transfer (paper V-C) end to end on generated sample cities: train on Wuhan 2021, test on Nanjing 2021 and
    Wuhan 2022; the three patch sets are training sets built from a served sample catalog and are reused by a
    second suite (which then needs no catalog server at all)."""
    from crofuse.experiments.data import MARKER
    from crofuse.experiments.runner import run_suite

    profile = PROFILES["micro"].with_changes(data=DataSettings(size_km=2.6))
    out = tmp_path / "results"
    from infra.stac import StacServer

    [path] = run_suite("transfer", profile=profile, seeds=1, out=out, progress=False, serve=StacServer)
    rec = json.loads(path.read_text())
    assert set(rec["domains"]) == {"spatial", "temporal"}
    assert (rec["domains"]["spatial"]["city"], rec["domains"]["spatial"]["year"]) == ("nanjing", 2021)
    assert (rec["domains"]["temporal"]["city"], rec["domains"]["temporal"]["year"]) == ("wuhan", 2022)
    for dom in rec["domains"].values():
        assert 0.0 <= dom["metrics"]["miou"] <= 1.0
    sets = sorted(p.parent.name for p in (out / "_data").glob(f"*/{MARKER}"))
    assert [s.rsplit("-", 1)[0] for s in sets] == ["nanjing-2021", "wuhan-2021", "wuhan-2022"]
    markers = {p: p.stat().st_mtime_ns for p in (out / "_data").glob(f"*/{MARKER}")}
    # the modality suite's CroFuseNet is the same run: reused, not retrained, and the patch sets are not rebuilt
    [mod] = run_suite("modality", profile=profile, seeds=1, out=out, methods=["crofusenet"], progress=False)
    mod_rec = json.loads(mod.read_text())
    assert mod_rec["reused"] is True and mod_rec["metrics"] == rec["metrics"]
    assert mod_rec["artifacts"]["run_dir"] == rec["artifacts"]["run_dir"]
    assert {p: p.stat().st_mtime_ns for p in (out / "_data").glob(f"*/{MARKER}")} == markers
    text = render_report(out)
    assert "| CroFuseNet | spatial: nanjing 2021 |" in text and "(n=1)" in text


def test_run_id_ignores_threads_but_not_training_settings(tmp_path: Path) -> None:
    from crofuse.experiments.runner import _run_id

    method = get_suite("table2").method("crofusenet")
    small = get_profile("cpu-small")
    base = _run_id(method, small, tmp_path, 0)
    assert _run_id(method, small.with_changes(torch_threads=1), tmp_path, 0) == base
    assert _run_id(method, small.with_changes(epochs=3), tmp_path, 0) != base
    assert _run_id(method, small, tmp_path, 1) != base
    assert _run_id(get_suite("loss").method("proposed"), small, tmp_path, 0) == base  # same model, loss, data
    assert _run_id(get_suite("loss").method("equal"), small, tmp_path, 0) != base


def test_training_length_override_renames_the_profile(tmp_path: Path) -> None:
    from crofuse.experiments.runner import _run_id, with_training_length

    small = get_profile("cpu-small")
    assert with_training_length(small) is small
    longer = with_training_length(small, epochs=60, patience=15)
    assert (longer.name, longer.epochs, longer.patience) == ("cpu-small[epochs=60,patience=15]", 60, 15)
    assert longer.benchmark and longer.lr == small.lr and longer.data == small.data
    method = get_suite("table2").method("unet")
    assert _run_id(method, longer, tmp_path, 0) != _run_id(method, small, tmp_path, 0)

