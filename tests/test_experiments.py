"""Experiment machinery: seed statistics, the "within noise" rule, the tables, the transfer mechanisms, the first
benchmark's records, and every suite end to end on micro sample cities built through STAC."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from crofuse.errors import ConfigError, DataError
from crofuse.experiments import PROFILES, PROGRAM, SUITES, get_profile, get_suite, render_report, write_docs
from crofuse.experiments.profiles import DataSettings
from crofuse.experiments.records import SCHEMA, load_records, record_path, write_json_atomic
from crofuse.experiments.report import aggregate, best_marks, format_cell, program_status
from crofuse.experiments.stats import compare, rank_chain, summarize
from crofuse.experiments.suites import matched_width, model_options, parameter_count

REPO = Path(__file__).resolve().parents[1]


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
    tight = summarize([0.95, 0.95, 0.95])
    assert compare(tight, a) == ">"  # Δ 0.03 > 0.02: the larger of the two spreads counts
    assert compare(summarize([0.93, 0.93, 0.93]), a) == "≈"  # Δ 0.01
    assert compare(summarize([0.1, 0.2]), summarize([0.2, 0.3]), higher_is_better=False) == ">"


def test_rank_chain_and_best_marks() -> None:
    sums = {"a": summarize([0.90, 0.92, 0.94]), "b": summarize([0.905] * 3), "c": summarize([0.80] * 3)}
    assert rank_chain(sums, labels={"a": "A", "b": "B", "c": "C"}) == "A ≈ B > C"
    assert best_marks(sums) == {"a": "≈", "b": "≈", "c": ""}
    assert best_marks({"a": summarize([0.90, 0.92, 0.94]), "c": summarize([0.80] * 3)}) == {"a": "best", "c": ""}
    single = {"a": summarize([0.9]), "c": summarize([0.8])}
    assert best_marks(single) == {"a": "?", "c": "?"}
    assert rank_chain(single) == "a ? c"
    # lower is better (drops): the smallest is best
    assert best_marks({"a": summarize([0.01, 0.02]), "c": summarize([0.2, 0.21])},
                      higher_is_better=False) == {"a": "best", "c": ""}


def test_cells_are_formatted_like_the_paper() -> None:
    assert format_cell(summarize([0.90, 0.92, 0.94]), "miou") == "0.9200 ± 0.0200"
    assert format_cell(summarize([0.90, 0.92, 0.94]), "oa") == "92.00 ± 2.00%"
    assert format_cell(summarize([0.9]), "mean_f1") == "0.9000 (n=1)"
    assert format_cell(None, "miou") == "–"


# ---- report from hand-written records ------------------------------------------------------------------------------


def _metrics(miou: float, oa: float, f1: float, **extra: float) -> dict[str, float]:
    return {"miou": miou, "oa": oa, "mean_f1": f1, **extra}


def _train(best: int, last: int, cap: int = 150, stopped: bool = True, params: int | None = None) -> dict[str, Any]:
    return {"kind": "deep", "best_epoch": best, "epochs": last, "max_epochs": cap, "stopped_early": stopped,
            "parameters": params, "options": {"base_channels": 8}}


def _record(suite: str, method: str, seed: int, metrics: dict[str, float], split: str = "blocked",
            **fields: Any) -> dict[str, Any]:
    return {
        "schema": SCHEMA, "suite": suite, "split": split, "method": method, "label": method, "seed": seed,
        "metrics": metrics, "profile": {"name": "cpu-small", "benchmark": True}, "timings": {"total_s": 60.0},
        **fields,
    }


def _write(results: Path, rec: dict[str, Any]) -> None:
    write_json_atomic(record_path(results, rec["split"], rec["suite"], rec["method"], rec["seed"]), rec)


@pytest.fixture()
def fixture_results(tmp_path: Path) -> Path:
    """Hand-written records: Table II on both splits (UNet, CroFuseNet, RF and its control), the ablation with one
    seed, transfer, and leave-one-city-out with a mechanism."""
    crofuse = [(0.80, 0.90, 0.85), (0.82, 0.92, 0.86), (0.84, 0.94, 0.87)]
    unet = [(0.70, 0.91, 0.845), (0.71, 0.91, 0.85), (0.72, 0.91, 0.855)]
    for seed, (m, o, f) in enumerate(crofuse):
        _write(tmp_path, _record("table2", "crofusenet", seed, _metrics(m, o, f, iou_impervious=0.7),
                                 train=_train(40 + seed, 60, stopped=seed != 2)))
        _write(tmp_path, _record("table2", "crofusenet", seed, _metrics(m + 0.1, o, f), split="random",
                                 train=_train(90, 110)))
    for seed, (m, o, f) in enumerate(unet):
        _write(tmp_path, _record("table2", "unet", seed, _metrics(m, o, f, iou_impervious=0.6), train=_train(30, 50)))
    for seed in range(3):
        _write(tmp_path, _record("table2", "rf", seed, _metrics(0.60 + seed / 1000, 0.8, 0.7)))
        _write(tmp_path, _record("table2", "rf-indices", seed, _metrics(0.65 + seed / 1000, 0.8, 0.7)))
    _write(tmp_path, _record("ablation", "case1", 0, _metrics(0.7, 0.8, 0.75), train=_train(5, 25, params=2_000_000)))
    _write(tmp_path, _record("ablation", "case5", 0, _metrics(0.72, 0.81, 0.76), train=_train(5, 25, params=4_000_000)))
    for seed, (src, spatial, temporal) in enumerate([(0.80, 0.60, 0.80), (0.82, 0.66, 0.80)]):
        domains = {"nanjing-2021": {"kind": "spatial", "name": "nanjing 2021", "metrics": _metrics(spatial, 0.8, 0.7)},
                   "wuhan-2022": {"kind": "temporal", "name": "wuhan 2022", "metrics": _metrics(temporal, 0.9, 0.8)}}
        _write(tmp_path, _record("transfer", "crofusenet", seed, _metrics(src, 0.9, 0.8), domains=domains))
    # leave one city out: per seed, in-domain and held-out MIoU on two cities
    loco = {"crofusenet": [((0.80, 0.70), (0.90, 0.84)), ((0.82, 0.70), (0.90, 0.86))],
            "crofusenet+scene-std": [((0.80, 0.79), (0.90, 0.89)), ((0.82, 0.80), (0.90, 0.894))]}
    for method, seeds in loco.items():
        for seed, ((in_a, held_a), (in_b, held_b)) in enumerate(seeds):
            domains = {
                "hefei-2021": {"kind": "held-out", "name": "hefei 2021", "metrics": _metrics(held_a, 0.9, 0.8),
                               "in_domain": _metrics(in_a, 0.9, 0.8), "train": _train(20, 40)},
                "wuhan-2021": {"kind": "held-out", "name": "wuhan 2021", "metrics": _metrics(held_b, 0.9, 0.8),
                               "in_domain": _metrics(in_b, 0.9, 0.8), "train": _train(22, 42)},
            }
            _write(tmp_path, _record("loco", method, seed, _metrics(0.85, 0.9, 0.8), domains=domains,
                                     train=_train(30, 50)))
    return tmp_path


def _lines(text: str) -> list[str]:
    return text.splitlines()


def test_table2_has_a_column_set_per_split_paper_values_and_best_epochs(fixture_results: Path) -> None:
    lines = _lines(render_report(fixture_results))
    header = next(line for line in lines if line.startswith("| Method | MIoU (blocked)"))
    assert header == ("| Method | MIoU (blocked) | OA (blocked) | F1-Score (blocked) | MIoU (random) | OA (random) | "
                      "F1-Score (random) | MIoU *paper* | OA *paper* | F1-Score *paper* | Best epoch (blocked) | "
                      "Best epoch (random) |")
    row = next(line for line in lines if line.startswith("| CroFuseNet |"))
    # blocked: 0.82 ± 0.02 clearly ahead of UNet 0.71 ± 0.01 and RF -> bold; random column: only CroFuseNet
    assert row.startswith("| CroFuseNet | **0.8200 ± 0.0200** | 92.00 ± 2.00% ≈ |")
    assert "| 0.9200 ± 0.0200 |" in row and "| 0.9495 | 97.77% | 0.9770 |" in row
    assert row.endswith("| 40, 41, 42† | 90, 90, 90 |")  # seed 2 hit the epoch cap
    unet = next(line for line in lines if line.startswith("| UNet |"))
    assert "| – | – | – |" in unet  # no random-split record
    control = next(line for line in lines if line.startswith("| *RF + indices* (control) |"))
    assert "0.6510 ± 0.0010" in control
    assert "- This run, blocked split, by MIoU: CroFuseNet > UNet > RF" in lines
    assert "- Paper: CroFuseNet > UNet > Deeplabv3+ > HRNet > FCN > RF > SVM" in lines
    assert "- (blocked) RF + indices vs RF: 0.6510 ± 0.0010 > 0.6010 ± 0.0010" in lines
    assert any(line.startswith("### Table III — accuracy per class, random split") for line in lines)


def test_table4_has_parameters_and_refuses_ranking_with_one_seed(fixture_results: Path) -> None:
    lines = _lines(render_report(fixture_results))
    start = lines.index("### Table IV — ablation of CFM and MFA")
    header = next(line for line in lines[start:] if line.startswith("| Method | IS IoU | IS IoU *paper* |"))
    assert header.count("*paper*") == 11 and header.endswith("| Params (M) | Best epoch |")
    row = next(line for line in lines if line.startswith("| Case5 (CroFuseNet) |"))
    assert "| 0.7200 (n=1) | 0.9495 |" in row and row.endswith("| 4.00 | 5 |") and "**" not in row
    assert "- This run, by MIoU: Case5 (CroFuseNet) ? Case1 (no CFM, no MFA)" in lines


def test_transfer_drops_are_per_seed_with_a_mean_over_cities(fixture_results: Path) -> None:
    text = render_report(fixture_results)
    # per-seed spatial drops 0.20 and 0.16 -> mean 0.18, std 0.0283
    assert "| CroFuseNet | spatial: nanjing 2021 | 0.6300 ± 0.0424 |" in text
    assert "spatial transfer to nanjing 2021: MIoU drop +0.1800 ± 0.0283 — a drop beyond the seed spread." in text
    # temporal drops 0.00 and 0.02 -> mean 0.01 inside std 0.0141: no transfer loss claimed
    assert "temporal transfer to wuhan 2022: MIoU drop +0.0100 ± 0.0141 — within the seed spread" in text


def test_loco_table_mean_drop_target_and_mechanism(fixture_results: Path) -> None:
    text = render_report(fixture_results)
    lines = _lines(text)
    # CroFuseNet: per seed the mean over cities of (in-domain - held-out): seed 0 (0.10 + 0.06)/2 = 0.08, seed 1
    # (0.12 + 0.04)/2 = 0.08 -> 0.08 ± 0.0
    assert "| CroFuseNet | hefei 2021 | 0.8100 ± 0.0141 | 0.7000 ± 0.0000 | +0.1100 ± 0.0141 |" in text
    mean = next(line for line in lines if line.startswith("| **CroFuseNet** | **mean over cities** |"))
    assert "+0.0800 ± 0.0000" in mean
    assert "- CroFuseNet: mean leave-one-city-out MIoU drop +0.0800 ± 0.0000 — misses the 0.03 target" in text
    # scene-std: seed 0 (0.01 + 0.01)/2 = 0.01, seed 1 (0.02 + 0.006)/2 = 0.013 -> 0.0115 ± 0.0021
    verdict = next(line for line in lines if line.startswith("- CroFuseNet + per-scene standardisation:"))
    assert "+0.0115 ± 0.0021 — meets the 0.03 target" in verdict
    assert verdict.endswith("against CroFuseNet (+0.0800 ± 0.0000): >.")


def test_program_status_lists_what_is_left(fixture_results: Path) -> None:
    by_suite = aggregate(load_records(fixture_results))
    status = program_status(by_suite, seeds=3)
    first = next(line for line in status.splitlines() if line.startswith("| 1 | table2 | blocked |"))
    assert "| 12 / 33 |" in first and "| started |" in first and "svm, fcn, hrnet" in first
    assert len([line for line in status.splitlines() if line.startswith("| ") and line[2].isdigit()]) == len(PROGRAM)
    assert PROGRAM[0] == ("table2", "blocked", None) and PROGRAM[1][:2] == ("table2", "random")
    assert [p[0] for p in PROGRAM][2:6] == ["loco", "ablation", "modality", "loss"]


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
    assert res["table2"]["blocked"].methods == ["rf", "unet", "crofusenet", "rf-indices"]
    assert res["table2"]["random"].metrics["crofusenet"]["miou"].values == pytest.approx((0.90, 0.92, 0.94))
    bad = tmp_path / "bad"
    (bad / "blocked" / "table2" / "rf").mkdir(parents=True)
    (bad / "blocked" / "table2" / "rf" / "seed0.json").write_text(json.dumps({"schema": "other"}))
    with pytest.raises(DataError, match="not a crofuse experiment record"):
        load_records(bad)
    with pytest.raises(DataError, match="does not exist"):
        load_records(tmp_path / "nowhere")


def test_the_first_benchmark_still_renders() -> None:
    """results-v1/cpu-small: schema-1 records in the old layout, made on the random split with RF/SVM on the bands and
    indices; they render as the random split's with-indices control rows."""
    v1 = REPO / "results-v1" / "cpu-small"
    records = load_records(v1)
    assert records and all(r["split"] == "random" for r in records)
    text = render_report(v1)
    assert "| *RF + indices* (control) | **0.9587 ± 0.0006** | **98.23 ± 0.02%** |" in text
    assert "export_patches" in text and "Program status" not in text
    assert "- This run, random split (the paper's), by MIoU: CroFuseNet ≈ UNet > Deeplabv3+ ≈ HRNet ≈ FCN" in text
    assert "spatial transfer to nanjing 2021: MIoU drop +0.1710 ± 0.0110" in text
    for sub in ("60ep", "200ep"):
        assert "Table II" in render_report(REPO / "results-v1" / sub)


def test_docs_block_is_rebuilt_and_the_rest_of_the_page_kept(fixture_results: Path, tmp_path: Path) -> None:
    from crofuse.experiments.report import begin_marker, end_marker

    page = tmp_path / "docs" / "results.md"
    page.parent.mkdir()
    handwritten = "# Results\n\nWhy the numbers differ, written by hand.\n\n"
    page.write_text(handwritten + f"{begin_marker(fixture_results)}\nold numbers\n{end_marker(fixture_results)}\n"
                    "\n## Afterword\nkept too\n")
    write_docs(page, fixture_results)
    text = page.read_text()
    assert text.startswith(handwritten) and text.endswith("## Afterword\nkept too\n")
    assert "old numbers" not in text and "### Comparison with six methods" in text
    assert "# CroFuseNet experiments on the sample benchmark" not in text  # no second title inside a page
    first = text
    write_docs(page, fixture_results)
    assert page.read_text() == first  # idempotent
    other = tmp_path / "other.md"
    other.write_text("no markers here\n")
    with pytest.raises(DataError, match="has no generated block"):
        write_docs(other, fixture_results)
    assert other.read_text() == "no markers here\n"  # a refused page is not touched


# ---- suites and profiles -------------------------------------------------------------------------------------------


def test_suites_hold_the_fairness_controls() -> None:
    assert set(SUITES) == {"table2", "ablation", "loss", "modality", "transfer", "loco"}
    table2 = get_suite("table2")
    assert table2.main_keys == ("rf", "svm", "fcn", "hrnet", "deeplabv3plus", "unet", "crofusenet")
    assert table2.method("rf").features == "bands" and table2.method("rf-indices").features == "bands+indices"
    assert table2.method("unet-plain").options == {"head_relu": False}
    assert table2.method("crofusenet-plain").control_of == "crofusenet"
    assert [m.key for m in table2.methods if m.optional] == ["unet-wide", "deeplabv3plus-published",
                                                            "fcn-channel-dropout"]
    assert table2.splits == ("blocked", "random")
    ablation = get_suite("ablation")
    assert [m.key for m in ablation.methods if m.role == "control"] == ["case1-wide", "case2-wide"]
    loco = get_suite("loco")
    assert {m.standardisation for m in loco.methods} == {"dataset", "per-scene"}
    assert loco.method("unet+radiometric").augmentation["sar_offset"] > 0
    assert [(m.alpha, m.beta) for m in get_suite("loss").methods] == [(0.0, 0.0), (1.0, 1.0), (1.0, 0.8)]
    assert get_suite("modality").method("unet-sar").paper["miou"] == pytest.approx(0.8558)
    with pytest.raises(ConfigError, match="unknown suite"):
        get_suite("table9")


def test_profiles() -> None:
    paper, small = get_profile("paper"), get_profile("cpu-small")
    assert (paper.epochs, paper.patience, paper.batch_size, paper.lr) == (400, 50, 32, 1e-4)
    assert small.unet_base_channels < paper.unet_base_channels and small.patience < small.epochs
    assert model_options(get_suite("table2").method("hrnet"), paper)["width"] == 18
    assert model_options(get_suite("table2").method("deeplabv3plus"), paper)["aspp_rates"] == [1, 3, 4]
    assert model_options(get_suite("table2").method("deeplabv3plus-published"), paper)["aspp_rates"] == [6, 12, 18]
    assert model_options(get_suite("ablation").method("case4"), small) == {"base_channels": 8, "fusion": "concat"}
    assert small.data.training_set_fields("random")["split"] == "random"
    with pytest.raises(ConfigError, match="unknown split"):
        small.data.training_set_fields("by-city")
    with pytest.raises(ConfigError, match="split"):
        DataSettings(size_km=8, training_set={"split": "random"})
    with pytest.raises(ConfigError, match="unknown profile"):
        get_profile("gpu-huge")
    with pytest.raises(ConfigError, match="epochs"):
        PROFILES["micro"].with_changes(epochs=0)


def test_cities_are_read_from_the_generator_at_run_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import crofuse.synthetic as synthetic
    from crofuse.experiments.runner import transfer_targets

    profile = get_profile("cpu-small")
    assert profile.city_names() == tuple(c.name for c in synthetic.DEFAULT_CITIES)
    more = (*synthetic.DEFAULT_CITIES, synthetic.HEFEI, synthetic.NANCHANG)
    monkeypatch.setattr(synthetic, "DEFAULT_CITIES", more)
    assert profile.city_names() == tuple(c.name for c in more)
    targets = transfer_targets(profile)
    assert [d.city for kind, d in targets if kind == "spatial"] == [c.name for c in more if c.name != "wuhan"]
    assert targets[-1][0] == "temporal" and targets[-1][1].year == profile.temporal_year
    assert profile.to_dict()["cities"] == [c.name for c in more]


def test_capacity_matched_width() -> None:
    paper = get_profile("paper")
    ablation = get_suite("ablation")
    target = parameter_count("crofusenet", model_options(ablation.method("case5"), paper))
    for case in ("case1", "case2"):
        narrow = parameter_count("crofusenet", model_options(ablation.method(case), paper))
        options = model_options(ablation.method(f"{case}-wide"), paper)
        wide = parameter_count("crofusenet", options)
        assert narrow < 0.55 * target and abs(wide - target) / target < 0.04, (case, narrow, wide, target)
        # the nearest width: one channel either way is further from the target
        for b in (options["base_channels"] - 1, options["base_channels"] + 1):
            assert abs(parameter_count("crofusenet", {**options, "base_channels": b}) - target) >= abs(wide - target)
    assert matched_width("crofusenet", {"base_channels": 8}, parameter_count("crofusenet", {"base_channels": 8})) == 8


def test_run_id_separates_what_changes_the_model(tmp_path: Path) -> None:
    from crofuse.experiments.runner import _run_id

    small = get_profile("cpu-small")
    crofuse = get_suite("table2").method("crofusenet")
    base = _run_id(crofuse, small, tmp_path, 0)
    assert _run_id(crofuse, small.with_changes(torch_threads=1), tmp_path, 0) == base
    assert _run_id(crofuse, small.with_changes(epochs=3), tmp_path, 0) != base
    assert _run_id(crofuse, small, tmp_path, 1) != base
    assert _run_id(get_suite("loss").method("proposed"), small, tmp_path, 0) == base  # same model, loss, data
    assert _run_id(get_suite("ablation").method("case5"), small, tmp_path, 0) == base
    assert _run_id(get_suite("loss").method("equal"), small, tmp_path, 0) != base
    assert _run_id(get_suite("table2").method("crofusenet-plain"), small, tmp_path, 0) != base
    loco = get_suite("loco")
    ids = {_run_id(loco.method(k), small, tmp_path, 0) for k in ("crofusenet", "crofusenet+scene-std",
                                                                 "crofusenet+radiometric")}
    assert len(ids) == 3 and base in ids
    assert _run_id(crofuse, small, tmp_path, 0, limit_batches=12) != base
    rf = get_suite("table2")
    assert _run_id(rf.method("rf"), small, tmp_path, 0) != _run_id(rf.method("rf-indices"), small, tmp_path, 0)


def test_training_length_override_renames_the_profile(tmp_path: Path) -> None:
    from crofuse.experiments.runner import _run_id, with_training_length

    small = get_profile("cpu-small")
    assert with_training_length(small) is small
    longer = with_training_length(small, epochs=60, patience=15)
    assert (longer.name, longer.epochs, longer.patience) == ("cpu-small[epochs=60,patience=15]", 60, 15)
    assert longer.benchmark and longer.lr == small.lr and longer.data == small.data
    method = get_suite("table2").method("unet")
    assert _run_id(method, longer, tmp_path, 0) != _run_id(method, small, tmp_path, 0)


# ---- transfer mechanisms: per-scene standardisation and radiometric augmentation -------------------------------------


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    optical = rng.gamma(4.0, 0.03, (2, 4, 32, 32)).astype(np.float32)
    sar = rng.normal(-12.0, 3.0, (2, 2, 32, 32)).astype(np.float32)
    return optical, sar


def test_per_scene_standardisation_removes_a_scene_wide_gain_and_offset() -> None:
    from tests.fixtures.model import TEST_NORMALIZATION

    scene = TEST_NORMALIZATION.with_mode("per-scene")
    optical, sar = _scene()
    optical[0, 1, :3, :3] = np.nan  # a cloud gap
    z_opt, z_sar = scene.standardise(optical, sar)
    assert np.allclose(np.nanmean(np.where(np.isnan(optical), np.nan, z_opt), axis=(-2, -1)), 0, atol=1e-5)
    assert np.allclose(z_sar.std(axis=(-2, -1)), 1, atol=1e-4)
    assert (z_opt[0, 1, :3, :3] == 0).all()  # missing -> 0, as in dataset mode
    gain = np.array([1.2, 0.8, 1.1, 0.9], np.float32)[None, :, None, None]
    shifted = scene.standardise(optical * gain + 0.02, sar + 1.5)  # another calibration / another city's palette
    assert np.allclose(shifted[0], z_opt, atol=1e-4) and np.allclose(shifted[1], z_sar, atol=1e-4)
    dataset_mode = TEST_NORMALIZATION.standardise(optical * gain + 0.02, sar + 1.5)
    assert not np.allclose(dataset_mode[1], TEST_NORMALIZATION.standardise(optical, sar)[1], atol=0.1)
    # torch and numpy give the same numbers (the Predictor runs on tensors, the dataset on arrays)
    t_opt, t_sar = scene.standardise(torch.from_numpy(optical), torch.from_numpy(sar))
    assert np.allclose(t_opt.numpy(), z_opt, atol=1e-5) and np.allclose(t_sar.numpy(), z_sar, atol=1e-5)
    # a uniform scene is not blown up: its std is floored at scene_min_std x the dataset std
    flat = np.full((1, 2, 16, 16), -10.0, np.float32)
    flat[0, 0, 0, 0] = -9.0
    z_flat = scene.standardise(np.ones((1, 4, 16, 16), np.float32) * 0.1, flat)[1]
    assert np.abs(z_flat).max() <= 1.0 / (scene.scene_min_std * min(scene.sar_std)) + 1e-4
    # a scene without any finite value falls back to the dataset statistics, then to 0
    empty = scene.standardise(np.full((1, 4, 8, 8), np.nan, np.float32), np.zeros((1, 2, 8, 8), np.float32))[0]
    assert (empty == 0).all()


def test_standardisation_mode_travels_in_the_card_and_the_predictor_applies_it(tmp_path: Path) -> None:
    from crofuse.checkpoint import Predictor, read_card
    from crofuse.model import ModelSpec
    from crofuse.normalization import Normalization
    from tests.fixtures.model import TEST_NORMALIZATION, make_checkpoint

    assert "mode" not in TEST_NORMALIZATION.to_dict()  # dataset cards are written as before
    scene = TEST_NORMALIZATION.with_mode("per-scene", scene_min_std=0.2)
    assert Normalization.from_dict(json.loads(json.dumps(scene.to_dict()))) == scene
    with pytest.raises(ConfigError, match="mode"):
        TEST_NORMALIZATION.with_mode("per-city")
    with pytest.raises(ConfigError, match="keys"):
        Normalization.from_dict({**scene.to_dict(), "extra": 1})
    spec = ModelSpec("unet-fusion", {"base_channels": 4, "head_relu": False})
    path = make_checkpoint(tmp_path / "scene.safetensors", spec, normalization=scene)
    assert read_card(path).normalization.mode == "per-scene"
    optical, sar = _scene(1)
    gain = np.array([1.3, 0.9, 1.1, 0.8], np.float32)[None, :, None, None]
    changed = {}
    for name, ckpt in (("per-scene", path), ("dataset", make_checkpoint(tmp_path / "plain.safetensors", spec))):
        predictor = Predictor.from_checkpoint(ckpt)
        p0 = predictor(optical, sar)
        changed[name] = (float(np.abs(predictor(optical * gain + 0.01, sar - 2.0) - p0).max()), float(p0.std()))
    assert changed["per-scene"][0] < 1e-5  # the same map under another calibration
    assert changed["dataset"][0] > max(100 * changed["per-scene"][0], 0.5 * changed["dataset"][1])


def test_radiometric_augmentation_is_an_affine_change_per_band_and_off_by_default() -> None:
    from crofuse.data import Augmentation

    rng_data = np.random.default_rng(0)
    optical = rng_data.normal(size=(4, 16, 16)).astype(np.float32)
    sar = rng_data.normal(size=(2, 16, 16)).astype(np.float32)
    label = (rng_data.random((16, 16)) > 0.5).astype(np.uint8)
    plain = Augmentation(blur=0.0)
    jitter = Augmentation(blur=0.0, optical_gain=0.2, optical_offset=0.3, sar_offset=0.5)
    assert not plain.radiometric and jitter.radiometric
    o1, s1, l1 = plain(optical, sar, label, rng=np.random.default_rng(7))
    o2, s2, l2 = jitter(optical, sar, label, rng=np.random.default_rng(7))
    assert np.array_equal(l1, l2)  # the same geometric draw: labels untouched by the jitter
    ratios = []
    for b in range(4):  # per optical band: o2 = g·o1 + c with g in [0.8, 1.2], c in [-0.3, 0.3]
        g, c = np.polyfit(o1[b].ravel(), o2[b].ravel(), 1)
        assert 0.8 <= g <= 1.2 and -0.3 <= c <= 0.3
        assert np.allclose(o2[b], g * o1[b] + c, atol=1e-4)
        ratios.append(g)
    assert len(set(np.round(ratios, 4))) > 1  # drawn per band
    d = (s2 - s1).reshape(2, -1)
    assert np.allclose(d, d[:, :1], atol=1e-5) and np.isclose(d[0, 0], d[1, 0], atol=1e-6)  # one common SAR offset
    assert abs(d[0, 0]) <= 0.5
    with pytest.raises(ConfigError, match="optical_gain"):
        Augmentation(optical_gain=1.5)
    with pytest.raises(ConfigError, match="sar_offset"):
        Augmentation(sar_offset=-1)
    assert Augmentation.from_dict(jitter.to_dict()) == jitter


# ---- every suite end to end on micro sample cities ---------------------------------------------------------------------


MICRO_METHODS = {
    ("table2", "blocked"): None,
    ("table2", "random"): ["rf", "unet"],
    ("ablation", "blocked"): ["case1", "case1-wide", "case5"],
    ("loss", "blocked"): ["main-only"],
    ("modality", "blocked"): ["unet-sar"],
    ("transfer", "blocked"): None,
    ("loco", "blocked"): ["crofusenet", "unet+scene-std+radiometric"],
}


def _micro_profile() -> Any:
    from crofuse.synthetic import DEFAULT_CITIES

    # the generator's default cities (read now, not hard-coded), at most three to keep CI short
    return PROFILES["micro"].with_changes(cities=tuple(c.name for c in DEFAULT_CITIES[:3]))


@pytest.fixture(scope="module")
def micro_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every suite with the micro profile, one seed, on sample cities built and served through STAC."""
    from crofuse.experiments.runner import run_suite
    from infra.stac import StacServer

    out = tmp_path_factory.mktemp("micro") / "results"
    torch.set_num_threads(1)
    for (suite, split), methods in MICRO_METHODS.items():
        run_suite(suite, profile=_micro_profile(), seeds=1, out=out, split=split, methods=methods, progress=False,
                  serve=StacServer)
    return out


def _records(results: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["split"], r["suite"], r["method"]): r for r in load_records(results)}


def test_micro_table2_records(micro_results: Path) -> None:
    from crofuse.model import ModelSpec

    records = _records(micro_results)
    blocked = {m: r for (sp, su, m), r in records.items() if (sp, su) == ("blocked", "table2")}
    assert set(blocked) == {m.key for m in get_suite("table2").default_methods}
    for rec in blocked.values():
        for key in ("miou", "oa", "mean_f1", "iou_impervious", "pa_pervious"):
            assert 0.0 <= rec["metrics"][key] <= 1.0
        assert rec["profile"]["name"] == "micro" and rec["profile"]["benchmark"] is False
        assert rec["machine"]["torch"] == torch.__version__ and (micro_results / rec["artifacts"]["run_dir"]).is_dir()
        train = rec["train"]
        if train["kind"] == "deep":
            assert 1 <= train["best_epoch"] <= train["epochs"] <= train["max_epochs"] == 2
            assert isinstance(train["stopped_early"], bool)
            assert train["parameters"] == ModelSpec(train["model"], train["options"]).parameter_count()
    assert blocked["rf"]["train"]["features"] == "bands" and blocked["rf-indices"]["train"]["features"] == "bands+indices"
    assert blocked["rf"]["train"]["classifier"]["config"]["features"] == "bands"
    assert blocked["deeplabv3plus"]["train"]["options"]["aspp_rates"] == [1, 2]
    assert blocked["unet-plain"]["train"]["options"]["head_relu"] is False
    # the random split is a second column set of the same table, on a patch set of its own
    random_unet = records[("random", "table2", "unet")]
    assert random_unet["source"]["dataset"] != blocked["unet"]["source"]["dataset"]
    manifests = {Path(r["source"]["dataset"]).name: json.loads((Path(r["source"]["dataset"]) / "patches.json")
                                                                .read_text()) for r in (random_unet, blocked["unet"])}
    leaks = {name.split("-")[2]: m["leaked_pixels"] for name, m in manifests.items()}
    assert leaks["blocked"] == 0 and leaks["random"] > 0  # what the blocked split is for


def test_micro_ablation_capacity_match_and_shared_runs(micro_results: Path) -> None:
    records = _records(micro_results)
    case1, wide, case5 = (records[("blocked", "ablation", k)] for k in ("case1", "case1-wide", "case5"))
    p1, pw, p5 = (r["train"]["parameters"] for r in (case1, wide, case5))
    assert p1 < pw and abs(pw - p5) / p5 < 0.2  # widened to CroFuseNet's size (coarse steps at width 4)
    assert wide["train"]["options"]["base_channels"] > case1["train"]["options"]["base_channels"]
    assert case5["reused"] is True  # Table II's CroFuseNet: trained once
    assert case5["artifacts"]["run_dir"] == records[("blocked", "table2", "crofusenet")]["artifacts"]["run_dir"]


def test_micro_transfer_targets_every_other_city_and_the_next_year(micro_results: Path) -> None:
    profile = _micro_profile()
    rec = _records(micro_results)[("blocked", "transfer", "crofusenet")]
    spatial = sorted(d["city"] for d in rec["domains"].values() if d["kind"] == "spatial")
    assert spatial == sorted(c for c in profile.city_names() if c != profile.source.city)
    temporal = [d for d in rec["domains"].values() if d["kind"] == "temporal"]
    assert [(d["city"], d["year"]) for d in temporal] == [(profile.source.city, profile.temporal_year)]
    for dom in rec["domains"].values():
        assert 0.0 <= dom["metrics"]["miou"] <= 1.0


def test_micro_loco_holds_each_city_out_on_its_own_test_blocks(micro_results: Path) -> None:
    from crofuse.checkpoint import read_card
    from crofuse.experiments.data import COMBINED_MARKER

    cities = _micro_profile().city_names()
    records = _records(micro_results)
    for key in ("crofusenet", "unet+scene-std+radiometric"):
        rec = records[("blocked", "loco", key)]
        assert sorted(d["city"] for d in rec["domains"].values()) == sorted(cities)
        for dom in rec["domains"].values():
            assert dom["city"] not in dom["trained_on"] and len(dom["trained_on"]) == len(cities) - 1
            assert 0 <= dom["metrics"]["miou"] <= 1 and 0 <= dom["in_domain"]["miou"] <= 1
            run = micro_results / dom["run_dir"]
            card = read_card(run / "best.safetensors")
            combined = Path(card.training_data["dataset_root"])
            members = json.loads((combined / COMBINED_MARKER).read_text())["members"]
            assert [Path(m[0]).name.split("-")[0] for m in members["test"]] == [dom["city"]]
            assert dom["city"] not in {Path(m[0]).name.split("-")[0] for m in members["train"] + members["val"]}
            # the held-out model is tested on exactly the city's own test patches
            own = sorted(p.name for p in (Path(dom["dataset"]) / "test" / "label").glob("*.tif"))
            assert sorted(p.name for p in (combined / "test" / "label").glob("*.tif")) == own
            expected_mode = "per-scene" if "scene-std" in key else "dataset"
            assert card.normalization.mode == expected_mode
            aug = card.training_data["augmentation"]
            assert (aug["sar_offset"] > 0) is ("radiometric" in key)


def test_micro_rerun_is_idempotent_and_the_report_renders(micro_results: Path, tmp_path: Path) -> None:
    from crofuse.experiments.figure import render_qualitative_figure
    from crofuse.experiments.runner import run_suite

    path = record_path(micro_results, "blocked", "table2", "unet", 0)
    before = path.read_text()
    run_suite("table2", profile=_micro_profile(), seeds=1, out=micro_results, methods=["unet"], progress=False)
    assert path.read_text() == before  # the finished record is kept, nothing retrained, no catalog needed
    text = render_report(micro_results)
    assert "Micro-run" in text and "| Method | MIoU (blocked) | OA (blocked) |" in text
    for suite in SUITES.values():
        assert f"## {suite.title} — paper {suite.paper_ref}" in text
    png = render_qualitative_figure(micro_results, "table2", tmp_path / "fig.png", n_patches=2)
    import matplotlib.image

    img = matplotlib.image.imread(png)
    assert img.shape[0] > 100 and img.shape[1] > 600  # 3 input columns + 11 methods


def test_cli_report_with_docs(micro_results: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from crofuse_cli import app
    from crofuse.experiments.report import begin_marker, end_marker

    page = tmp_path / "results.md"
    page.write_text(f"# Hand-written\n\n{begin_marker(micro_results)}\n{end_marker(micro_results)}\n")
    result = CliRunner().invoke(app, ["experiments", "report", str(micro_results), "--patches", "2", "--docs",
                                      str(page)])
    assert result.exit_code == 0, result.output
    assert (micro_results / "report.md").read_text().startswith("# CroFuseNet experiments")
    assert (micro_results / "blocked-table2-qualitative.png").exists()
    docs = page.read_text()
    assert docs.startswith("# Hand-written") and "### Leave one city out" in docs
    link = next(line for line in docs.splitlines() if "blocked-table2-qualitative.png" in line)
    target = link.split("](")[1].rstrip(")")
    assert not Path(target).is_absolute() and (page.parent / target).resolve() == (
        micro_results / "blocked-table2-qualitative.png").resolve()  # relative to the page
    bad = CliRunner().invoke(app, ["experiments", "run", "table9", "--out", str(micro_results)])
    assert bad.exit_code == 2 and "unknown suite" in bad.output
    bad_split = CliRunner().invoke(app, ["experiments", "run", "table2", "--split", "by-city", "--out",
                                         str(tmp_path / "x")])
    assert bad_split.exit_code == 2 and "unknown split" in bad_split.output


def test_external_source_root_runs_on_its_own_split(tmp_path: Path) -> None:
    """A WHU-IS style folder (e.g. the real WHU-IS) instead of the sample cities: split ``external``."""
    from crofuse.experiments.runner import run_suite
    from tests.fixtures.patches import write_patch_set

    source = write_patch_set(tmp_path / "patches", counts={"train": 6, "val": 3, "test": 3}, size=32)
    torch.set_num_threads(1)
    [path] = run_suite("table2", profile=PROFILES["micro"], seeds=1, out=tmp_path / "results", methods=["rf"],
                       source_root=source, progress=False)
    rec = json.loads(path.read_text())
    assert rec["split"] == "external" and path.parts[-4] == "external" and rec["metrics"]["oa"] > 0.8
    with pytest.raises(ConfigError, match="source-root"):
        run_suite("loco", profile=PROFILES["micro"], seeds=1, out=tmp_path / "r2", source_root=source,
                  progress=False)
