"""Training sets and training runs on object storage: ``crofuse training-set build s3://…`` and
``crofuse train s3://… --out s3://…`` on the project's S3-compatible server (``moto_server`` on 127.0.0.1,
:class:`infra.s3.S3Server`), read back through the S3 API itself (boto3, not the I/O layer under test).

What must hold, as on disk: the objects are complete, a half-built set never looks finished and its rerun resumes
city-year by city-year, a complete set is not rewritten, nothing lands under the local working folder, training reads
a local copy fetched once (keyed by the listing's etags) and its checkpoints are uploaded, loadable, and resumable.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from crofuse.errors import PatchDatasetError
from crofuse.io.store import TEMP_MARK, Location, location
from crofuse.trainingset import (
    SPLITS,
    build_training_set,
    local_training_set,
    read_manifest,
    training_set_config,
)

SETTINGS = {"split": "random", "patch_size": 64, "stride": 64}
P = SETTINGS["patch_size"]


def _config(out: str, catalog: str):
    return training_set_config(out=out, cities=[{"name": "wuhan"}], years=[2021, 2022], catalog=catalog,
                               labels="sample", **SETTINGS)


def _objects(env: dict[str, str], url: str) -> dict[str, dict]:
    """Every object under ``url`` by key relative to it, listed with boto3 (``Key``, ``Size``, ``ETag``)."""
    import boto3

    loc = location(url)
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env.get("AWS_REGION", "us-east-1"),
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    found: dict[str, dict] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=f"{loc.key}/"):
        for obj in page.get("Contents", []):
            found[obj["Key"][len(loc.key) + 1:]] = obj
    return found


def _get(env: dict[str, str], url: str) -> bytes:
    import boto3

    loc = location(url)
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env.get("AWS_REGION", "us-east-1"),
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    return client.get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read()


@pytest.fixture
def local_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """An empty working folder (``cwd``; an ``s3://`` URL mistaken for a path would land here) and the worker-local
    temporary space (``$CROFUSE_TMPDIR``)."""
    cwd, scratch = tmp_path / "cwd", tmp_path / "scratch"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("CROFUSE_TMPDIR", str(scratch))
    return cwd, scratch


@pytest.fixture(scope="module")
def s3_set(s3_server, stac_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A complete training set built at ``s3://crofuse-test/<module prefix>/ts`` (once for the module)."""
    import uuid

    with pytest.MonkeyPatch.context() as mp:
        for key, value in s3_server.env.items():
            mp.setenv(key, value)
        mp.setenv("CROFUSE_TMPDIR", str(tmp_path_factory.mktemp("scratch")))
        url = f"s3://crofuse-test/ts-{uuid.uuid4().hex[:10]}/ts"
        build_training_set(_config(url, stac_api), progress=False)
        yield url


# ---------------------------------------------------------------------------------------------------- training sets
def test_an_interrupted_build_on_s3_never_looks_finished_and_its_rerun_resumes(
        s3_root: str, s3_env: dict[str, str], stac_api: str, local_dirs, monkeypatch: pytest.MonkeyPatch) -> None:
    import crofuse.trainingset.build as build_module

    cwd, _ = local_dirs
    out = f"{s3_root}/ts"
    config = _config(out, stac_api)
    real_write, real_patch = build_module.write_city_year, build_module.write_patch

    def killed_in_2022(cfg, plan, prepared):
        if prepared.year == 2022:
            raise KeyboardInterrupt("killed")
        return real_write(cfg, plan, prepared)

    monkeypatch.setattr(build_module, "write_city_year", killed_in_2022)
    with pytest.raises(KeyboardInterrupt):
        build_training_set(config, progress=False)
    objects = _objects(s3_env, out)
    assert ".incomplete" in objects and "patches.json" not in objects
    assert ".progress/wuhan-2021.json" in objects and ".progress/wuhan-2022.json" not in objects
    assert any(k.startswith("train/label/wuhan_2021_") for k in objects)
    assert not any(k.startswith(f"{s}/label/wuhan_2022_") for k in objects for s in SPLITS)
    assert read_manifest(out) is None
    with pytest.raises(PatchDatasetError, match="still being built or whose build was interrupted"):
        local_training_set(out)

    written: list[str] = []

    def spy(root, split, name, **kw):
        written.append(name)
        return real_patch(root, split, name, **kw)

    monkeypatch.setattr(build_module, "write_city_year", real_write)
    monkeypatch.setattr(build_module, "write_patch", spy)
    summary = build_training_set(config, progress=False)
    assert not summary.reused and str(summary.root) == out
    assert written and all(n.startswith("wuhan_2022_") for n in written), "2021 was done: only 2022 is written"
    objects = _objects(s3_env, out)
    assert ".incomplete" not in objects and "patches.json" in objects
    manifest = json.loads(_get(s3_env, f"{out}/patches.json"))
    listed = [n for v in manifest["splits"].values() for n in v]
    assert len(listed) == sum(summary.counts.values())
    assert sorted(n for n in listed if n.startswith("wuhan_2022_")) == sorted(written)
    for s in SPLITS:
        for m in ("optical", "sar", "label"):
            assert sorted(k.split("/")[-1][:-4] for k in objects if k.startswith(f"{s}/{m}/")) == manifest["splits"][s]

    written.clear()
    again = build_training_set(config, progress=False)
    assert again.reused and written == [], "a complete set is not rewritten"
    assert {k: o["ETag"] for k, o in _objects(s3_env, out).items()} == {k: o["ETag"] for k, o in objects.items()}
    assert list(cwd.iterdir()) == [], "nothing is written under the local working folder"


def test_a_build_killed_with_sigkill_leaves_no_finished_marker_and_no_temporary_files(
        s3_root: str, s3_env: dict[str, str], stac_api: str, local_dirs) -> None:
    """``crofuse training-set build s3://…`` in a process of its own, killed (SIGKILL) as soon as its first patch
    object is in the bucket: no ``patches.json``, ``.incomplete`` still there; the rerun finishes the set and clears
    what the killed process left in temporary space."""
    import os
    import subprocess
    import sys
    import time

    cwd, scratch = local_dirs
    out = f"{s3_root}/ts"
    command = [sys.executable, "-m", "crofuse_cli", "training-set", "build", out, "--city", "wuhan", "--years",
               "2021,2022", "--catalog", stac_api, "--split", "random", "--patch-size", str(P), "--stride", str(P),
               "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not any(k.startswith(("train/", "val/", "test/")) for k in _objects(s3_env, out)):
            assert proc.poll() is None, f"the build ended before it was killed: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "no patch was written within 120 s"
            time.sleep(0.05)
        proc.kill()
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -9
    objects = _objects(s3_env, out)
    assert ".incomplete" in objects and "patches.json" not in objects, "a killed build never looks finished"
    assert read_manifest(out) is None
    left = sorted(scratch.glob("crofuse-scratch-*"))  # the folder of the write it was killed in, if any

    summary = build_training_set(_config(out, stac_api), progress=False)
    assert not summary.reused and sum(summary.counts.values()) > 0
    objects = _objects(s3_env, out)
    assert ".incomplete" not in objects and "patches.json" in objects
    manifest = json.loads(_get(s3_env, f"{out}/patches.json"))
    assert all(f in objects for f in [f"{s}/{m}/{n}.tif" for s in SPLITS for n in manifest["splits"][s]
                                      for m in ("optical", "sar", "label")])
    assert not [p for p in left if p.exists()], "the next write removed the killed process's temporary folder"
    assert not sorted(scratch.glob("crofuse-scratch-*"))
    assert list(cwd.iterdir()) == []


def test_a_training_set_on_s3_comes_back_complete_through_the_s3_api(s3_set: str, s3_env: dict[str, str],
                                                                     local_dirs) -> None:
    """Every object a reader gets with plain S3 GETs is a whole GeoTIFF holding the cube's values, and no temporary
    object is left in the bucket."""
    import rasterio

    from crofuse.cube import open_cube

    objects = _objects(s3_env, s3_set)
    assert not [k for k in objects if TEMP_MARK in k or ".tmp" in k], "no temporary object is left"
    manifest = json.loads(_get(s3_env, f"{s3_set}/patches.json"))
    assert manifest["format"] == "crofuse-training-set" and manifest["fingerprint"] == _config(
        s3_set, manifest["city_years"][0]["catalog"]).fingerprint()
    assert [c["cube"] for c in manifest["city_years"]] == ["cubes/wuhan/2021/inputs.zarr", "cubes/wuhan/2022/inputs.zarr"]
    assert all(f"{c['labels']}" in objects for c in manifest["city_years"]), "the labels on the cube grid are there"
    cubes = {c["year"]: open_cube(location(f"{s3_set}/{c['cube']}")) for c in manifest["city_years"]}
    checked = 0
    for s in SPLITS:
        assert manifest["splits"][s], f"the {s} split has patches"
        for name in manifest["splits"][s][:3]:
            year, r, c = (int(v) for v in name.split("_")[1:])
            files = {}
            for m in ("optical", "sar", "label"):
                data = _get(s3_env, f"{s3_set}/{s}/{m}/{name}.tif")
                assert len(data) == objects[f"{s}/{m}/{name}.tif"]["Size"]
                with rasterio.MemoryFile(io.BytesIO(data)) as mem, mem.open() as src:
                    assert (src.width, src.height, src.crs.to_epsg()) == (P, P, 32650)
                    files[m] = src.read()
            assert files["optical"].shape[0] == 4 and files["sar"].shape[0] == 2 and files["label"].dtype == np.uint8
            cube = cubes[year]
            np.testing.assert_array_equal(files["optical"], cube["optical"].values[:, r : r + P, c : c + P])
            np.testing.assert_array_equal(files["sar"], cube["sar"].values[:, r : r + P, c : c + P])
            assert set(np.unique(files["label"])) <= {0, 1, 255}
            checked += 1
    assert checked >= 3


def test_training_set_cli_takes_s3_urls(s3_set: str, s3_env: dict[str, str], stac_api: str, local_dirs) -> None:
    from typer.testing import CliRunner

    from crofuse_cli import app

    cwd, _ = local_dirs
    info = CliRunner().invoke(app, ["training-set", "info", s3_set])
    assert info.exit_code == 0, info.output
    assert json.loads(info.output)["split"]["kind"] == "random"
    again = CliRunner().invoke(app, ["training-set", "build", s3_set, "--city", "wuhan", "--years", "2021,2022",
                                     "--catalog", stac_api, "--split", "random", "--patch-size", str(P), "--stride",
                                     str(P), "--no-progress"])
    assert again.exit_code == 0, again.output
    assert f"training set: {s3_set} (already complete" in again.output
    assert list(cwd.iterdir()) == [], "the URL was not taken for a local folder"


# ---------------------------------------------------------------------------------------------------- training
class _Crash(RuntimeError):
    pass


def test_training_from_s3_to_s3_uploads_loadable_checkpoints_and_resumes(
        s3_set: str, s3_root: str, s3_env: dict[str, str], local_dirs) -> None:
    from dataclasses import replace

    from crofuse.checkpoint import load_checkpoint
    from crofuse.training import TrainConfig, train

    cwd, scratch = local_dirs
    run = f"{s3_root}/runs/m1"
    config = TrainConfig(data_root=s3_set, out_dir=run, model="crofusenet", model_options={"base_channels": 4},
                         batch_size=4, max_epochs=2, limit_batches=2, seed=0, device="cpu", progress=False)

    def crash_after_one(epoch: int, record: dict) -> None:
        if epoch == 1:
            raise _Crash("simulated crash")

    with pytest.raises(_Crash):
        train(config, on_epoch_end=crash_after_one)
    objects = _objects(s3_env, run)
    assert {"last.safetensors", "last.card.json", "last.state.safetensors", "last.state.json", "best.safetensors",
            "best.card.json", "history.json", "history.csv"} <= set(objects)
    assert not [k for k in objects if TEMP_MARK in k or ".tmp" in k]
    state = json.loads(_get(s3_env, f"{run}/last.state.json"))
    assert state["epoch"] == 1 and not state["finished"]
    best = load_checkpoint(f"{run}/best.safetensors")
    assert best.card.training_data["dataset_root"] == s3_set, "the card records the URL, not the local copy"
    assert best.card.training_data["training_set"]["fingerprint"] == read_manifest(s3_set)["fingerprint"]
    assert json.loads(_get(s3_env, f"{run}/best.card.json"))["model"] == best.card.to_dict()["model"]

    copies = sorted((scratch / "crofuse-cache").glob("training-set-*"))
    assert len(copies) == 1 and (copies[0] / "patches.json").read_bytes() == _get(s3_env, f"{s3_set}/patches.json")
    fetched = {p: p.stat().st_mtime_ns for p in copies[0].rglob("*.tif")}
    assert len(fetched) == 3 * sum(len(v) for v in read_manifest(s3_set)["splits"].values())

    ran: list[int] = []
    result = train(config, on_epoch_end=lambda epoch, record: ran.append(epoch))
    assert ran == [2], "continued from the epoch saved on S3"
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert isinstance(result.best_checkpoint, Location) and str(result.best_checkpoint) == f"{run}/best.safetensors"
    assert json.loads(_get(s3_env, f"{run}/last.state.json"))["finished"]
    last = load_checkpoint(result.last_checkpoint)
    assert last.card.training_data["epoch"] == 2
    assert [r["epoch"] for r in json.loads(_get(s3_env, f"{run}/history.json"))] == [1, 2]
    assert sorted((scratch / "crofuse-cache").glob("training-set-*")) == copies, "the local copy was reused"
    assert {p: p.stat().st_mtime_ns for p in copies[0].rglob("*.tif")} == fetched, "nothing was fetched again"

    again: list[int] = []
    train(config, on_epoch_end=lambda epoch, record: again.append(epoch))
    assert again == [], "a finished run is not trained again"
    with pytest.raises(Exception, match="batch_size"):
        train(replace(config, batch_size=2))
    assert list(cwd.iterdir()) == [], "nothing is written under the local working folder"


def test_checkpoint_commands_take_s3_urls(s3_set: str, s3_root: str, s3_env: dict[str, str], local_dirs) -> None:
    """``crofuse train``, ``info`` and ``evaluate`` with ``s3://`` training set, run directory and checkpoint."""
    from typer.testing import CliRunner

    from crofuse_cli import app

    cwd, _ = local_dirs
    run = f"{s3_root}/runs/cli"
    trained = CliRunner().invoke(app, ["train", s3_set, "--out", run, "--epochs", "1", "--limit-batches", "1",
                                       "--batch-size", "4", "--base-channels", "4", "--device", "cpu",
                                       "--no-progress"])
    assert trained.exit_code == 0, trained.output
    assert f"best checkpoint: {run}/best.safetensors" in trained.output
    info = CliRunner().invoke(app, ["info", f"{run}/best.safetensors"])
    assert info.exit_code == 0 and json.loads(info.output)["training_data"]["dataset_root"] == s3_set
    evaluated = CliRunner().invoke(app, ["evaluate", f"{run}/best.safetensors", s3_set, "--split", "val", "--json",
                                         "--device", "cpu"])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(evaluated.output)
    assert 0.0 <= metrics["oa"] <= 1.0 and metrics["reliability_plot"] == f"{run}/best.val.reliability.png"
    assert "best.val.reliability.png" in _objects(s3_env, run), "the reliability diagram is uploaded"
    assert _get(s3_env, f"{run}/best.val.reliability.png")[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(cwd.iterdir()) == []


def test_configs_keep_urls_and_refuse_unsupported_schemes_in_one_line() -> None:
    from crofuse.errors import ConfigError
    from crofuse.training import TrainConfig

    config = _config("s3://bucket/ts/", "http://127.0.0.1:1")
    assert config.out == "s3://bucket/ts" and str(config.root) == "s3://bucket/ts", "the // of the URL is kept"
    assert _config("file:///data/ts", "http://127.0.0.1:1").out == Path("/data/ts")
    train = TrainConfig(data_root="s3://bucket/ts", out_dir="s3://bucket/runs/m1")
    assert (train.data_root, train.out_dir) == ("s3://bucket/ts", "s3://bucket/runs/m1")
    assert train.resume_key()["data_root"] == "s3://bucket/ts"
    with pytest.raises(ConfigError, match=r"out: .*gs://bucket/ts: unsupported URL scheme 'gs'; give a path"):
        _config("gs://bucket/ts", "http://127.0.0.1:1")
    with pytest.raises(ConfigError, match=r"out_dir: gs://bucket/run: unsupported URL scheme 'gs'"):
        TrainConfig(data_root="data/ts", out_dir="gs://bucket/run")
