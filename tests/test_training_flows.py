"""``build-training-set`` and ``train-model`` through a real Prefect server and process worker (``prefect.yaml``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.prefect_server import run_deployment, wait_for_flow_run
from tests.fixtures.prefect import prefect_logs

pytestmark = pytest.mark.slow


def _artifacts(server, flow_run_id: str) -> dict[str, object]:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read():
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
            return {a.key: a for a in found}

    import os

    old = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: server.api_url}):
            return asyncio.run(read())
    finally:
        if old is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = old


def test_training_set_and_training_through_deployments(prefect_server, stac_api: str, tmp_path: Path) -> None:
    cities = tmp_path / "cities.yaml"
    cities.write_text("cities:\n  - name: wuhan\n")
    ts = tmp_path / "ts"
    run_id = run_deployment(prefect_server, "build-training-set/build-training-set", parameters={
        "cities_file": str(cities), "years": "[2021, 2022]", "catalog": stac_api, "out": str(ts),
        "split": "blocked", "block_km": "0.96", "patch_size": "32", "stride": "32",
    })
    run = wait_for_flow_run(prefect_server, run_id, timeout=600)
    assert run.state.is_completed(), f"{run.state.name}: {run.state.message}\n{prefect_logs(prefect_server.home)}"
    manifest = json.loads((ts / "patches.json").read_text())
    assert manifest["split"]["kind"] == "blocked" and manifest["leaked_pixels"] == 0
    assert len(manifest["city_years"]) == 2 and all(manifest["splits"][s] for s in ("train", "val", "test"))
    table = _artifacts(prefect_server, run_id)["training-set"]
    assert {row["split"] for row in json.loads(table.data)} == {"train", "val", "test"}

    out = tmp_path / "model"
    run_id = run_deployment(prefect_server, "train-model/train-model", parameters={
        "training_set": str(ts), "out": str(out), "base_channels": "4", "epochs": "1", "batch_size": "8",
        "max_patches": "8", "device": "cpu",
    })
    run = wait_for_flow_run(prefect_server, run_id, timeout=600)
    assert run.state.is_completed(), f"{run.state.name}: {run.state.message}\n{prefect_logs(prefect_server.home)}"
    from crofuse.checkpoint import read_card

    card = read_card(out / "best.safetensors")
    assert card.training_data["recipe"] == manifest["recipe"]
    assert card.training_data["split"]["kind"] == "blocked"
    assert "best checkpoint" in _artifacts(prefect_server, run_id)["train-model"].data
