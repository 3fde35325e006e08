"""``prefect.yaml`` against a real Prefect server and process worker: deploy, ``prefect deployment run``, Completed;
the runs' artifacts read back through the server's API; bad typed options refused at submission."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from infra.prefect_server import (
    REPO_ROOT,
    prefect_executable,
    run_deployment,
    wait_for_flow_run,
)
from tests.fixtures.prefect import prefect_logs

pytestmark = pytest.mark.slow


def test_prefect_yaml_declares_both_deployments() -> None:
    spec = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert set(deployments) == {"map-city", "yearly-remap", "build-training-set", "train-model"}
    assert deployments["build-training-set"]["entrypoint"] == "flows/training.py:build_training_set_flow"
    assert deployments["train-model"]["entrypoint"] == "flows/training.py:train_model_flow"
    assert deployments["map-city"]["entrypoint"] == "flows/map_city.py:map_city"
    assert deployments["yearly-remap"]["entrypoint"] == "flows/remap.py:remap_cities"
    assert deployments["yearly-remap"]["schedules"][0]["cron"].split()[2:4] == ["1", "2"]  # once a year
    assert {d["work_pool"]["name"] for d in deployments.values()} == {"crofuse-process"}
    (pull,) = spec["pull"]
    assert "prefect.deployments.steps.set_working_directory" in pull
    assert [a["name"] for a in spec["automations"]] == ["crofuse-crash-zombie-flow-runs"]  # created by deploy()


def test_deployment_run_completes(prefect_server, stac_api: str, tiny_checkpoint: Path, tmp_path: Path) -> None:
    listed = subprocess.run(
        [prefect_executable(), "deployment", "ls"], env=prefect_server.env, capture_output=True, text=True, timeout=120
    )
    assert "map-city/map-city" in listed.stdout and "remap-cities/yearly-remap" in listed.stdout

    run_id = run_deployment(
        prefect_server,
        "map-city/map-city",
        parameters={
            "city": "wuhan",
            "year": "2021",
            "catalog": stac_api,
            "checkpoint": str(tiny_checkpoint),
            "output": str(tmp_path),
            "dask_address": "in-process",
        },
    )
    run = wait_for_flow_run(prefect_server, run_id, timeout=600)
    assert run.state.is_completed(), f"{run.state.name}: {run.state.message}\n{prefect_logs(prefect_server.home)}"
    assert (tmp_path / "wuhan" / "2021" / "impervious.tif").exists()
    assert (tmp_path / "statistics.csv").read_text().splitlines()[1].startswith("wuhan,2021,")

    # the yearly deployment carries its cron schedule on the server
    shown = subprocess.run(
        [prefect_executable(), "deployment", "inspect", "remap-cities/yearly-remap"],
        env=prefect_server.env, capture_output=True, text=True, timeout=120,
    )
    assert "0 3 1 2 *" in shown.stdout

    # deploy() also created prefect.yaml's zombie automation (prefect deploy itself ignores `automations:`)
    from prefect.client.orchestration import PrefectClient

    async def zombie_automations():
        async with PrefectClient(api=prefect_server.api_url) as client:
            return await client.read_automations_by_name("crofuse-crash-zombie-flow-runs")

    (automation,) = asyncio.run(zombie_automations())
    assert automation.enabled and automation.actions[0].state.value == "CRASHED"

    # the run's artifacts, read back through the server's API: the statistics record as a table, and a summary
    # with the figures, the product item's link and the quicklook
    artifacts = _artifacts(prefect_server, run_id)
    assert {"statistics-wuhan-2021", "map-city-wuhan-2021"} <= set(artifacts)
    table = artifacts["statistics-wuhan-2021"]
    assert table.type == "table"
    rows = {r["field"]: r["value"] for r in json.loads(table.data)}
    record = json.loads((tmp_path / "wuhan" / "2021" / "statistics.json").read_text())
    assert rows["city"] == "wuhan" and rows["year"] == 2021
    assert rows["impervious_km2"] == record["impervious_km2"] and rows["aoi_km2"] == record["aoi_km2"]
    summary = artifacts["map-city-wuhan-2021"]
    assert summary.type == "markdown"
    item = tmp_path / "wuhan" / "2021" / "item.json"
    assert item.is_file() and item.resolve().as_uri() in summary.data
    assert str(tmp_path / "wuhan" / "2021" / "quicklook.png") in summary.data
    assert f"{record['impervious_km2']:.3f} km²" in summary.data

    # the yearly deployment over the same output: already done, and its table artifact says so
    cities = tmp_path / "cities.yaml"
    cities.write_text("cities:\n  - name: wuhan\n")
    remap_id = run_deployment(prefect_server, "remap-cities/yearly-remap", parameters={
        "cities_file": str(cities), "years": "[2021]", "catalog": stac_api, "checkpoint": str(tiny_checkpoint),
        "output": str(tmp_path), "dask_address": "in-process"})
    remap = wait_for_flow_run(prefect_server, remap_id, timeout=600)
    assert remap.state.is_completed(), f"{remap.state.name}: {remap.state.message}\n{prefect_logs(prefect_server.home)}"
    (row,) = json.loads(_artifacts(prefect_server, remap_id)["remap-cities"].data)
    assert (row["city"], row["year"], row["status"]) == ("wuhan", 2021, "already done")
    assert row["impervious_km2"] == round(record["impervious_km2"], 6) and row["item"] == str(item)


def _artifacts(server, flow_run_id: str) -> dict:
    """The latest artifacts of a flow run by key, from the server's API."""
    from uuid import UUID

    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read():
        async with PrefectClient(api=server.api_url) as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])))

    return {a.key: a for a in asyncio.run(read())}


def test_bad_parameters_are_rejected_by_the_server(prefect_server) -> None:
    proc = subprocess.run(
        [prefect_executable(), "deployment", "run", "map-city/map-city", "-p", "city=wuhan", "-p", "year=1999"],
        env=prefect_server.env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "1999" in proc.stdout + proc.stderr or "minimum" in (proc.stdout + proc.stderr).lower()


@pytest.mark.parametrize(("option", "value", "words"), [
    ("tiling", '{"chunk_sise": 256}', ("tiling", "chunk_sise", "not allowed")),
    ("cube_options", '{"loader": "gdal"}', ("cube_options", "gdal")),
    ("tiling", '{"batch_size": 0}', ("tiling", "batch_size")),
])
def test_bad_typed_options_are_refused_at_submission(prefect_server, option: str, value: str, words) -> None:
    """The deployment publishes TilingOptions/CubeOptions as JSON schema: the server refuses bad keys and values
    before a flow run exists (no worker ever sees them), and says which field is wrong."""
    proc = subprocess.run(
        [prefect_executable(), "deployment", "run", "map-city/map-city", "-p", "city=wuhan", "-p", "year=2021",
         "-p", f"{option}={value}"],
        env=prefect_server.env, capture_output=True, text=True, timeout=120, check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Created flow run" not in out
    for word in words:
        assert word in out, (word, out)


def test_deployments_publish_the_typed_option_schemas(prefect_server) -> None:
    """The UI's form comes from the deployment's parameter schema: the options are objects with their fields."""
    from prefect.client.orchestration import PrefectClient

    async def schemas():
        async with PrefectClient(api=prefect_server.api_url) as client:
            return {name: (await client.read_deployment_by_name(name)).parameter_openapi_schema
                    for name in ("map-city/map-city", "remap-cities/yearly-remap")}

    for name, schema in asyncio.run(schemas()).items():
        tiling = schema["definitions"]["TilingOptions"]
        assert tiling["additionalProperties"] is False, name
        assert tiling["properties"]["window"]["multipleOf"] == 16 and tiling["properties"]["window"]["default"] == 128
        assert "catalog_deadline" in schema["definitions"]["CubeOptions"]["properties"]
    assert "max_concurrent" in schema["properties"]  # remap-cities' bound


def test_offline_settings_are_real_prefect_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A misspelt setting would be ignored silently by Prefect: every one must be read back as set."""
    from prefect.settings import Settings

    from infra.prefect_server import OFFLINE_SETTINGS, offline_environment

    env = offline_environment(tmp_path, api_url="http://127.0.0.1:1/api", base={})
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    read_back = settings.to_environment_variables(exclude_unset=True)
    for key, value in OFFLINE_SETTINGS.items():
        if key.startswith("PREFECT_"):
            assert key in read_back, f"{key} is not a Prefect setting"
            assert read_back[key].lower() == value.lower(), key
    assert settings.server.analytics_enabled is False and settings.server.ui.enabled is False
    assert settings.home == tmp_path.resolve()
