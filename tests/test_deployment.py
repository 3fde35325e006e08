"""``prefect.yaml`` against a real Prefect server and process worker: deploy, ``prefect deployment run``, Completed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from infra.prefect_server import REPO_ROOT, prefect_executable, run_deployment, wait_for_flow_run
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
    import asyncio

    from prefect.client.orchestration import PrefectClient

    async def zombie_automations():
        async with PrefectClient(api=prefect_server.api_url) as client:
            return await client.read_automations_by_name("crofuse-crash-zombie-flow-runs")

    (automation,) = asyncio.run(zombie_automations())
    assert automation.enabled and automation.actions[0].state.value == "CRASHED"


def test_bad_parameters_are_rejected_by_the_server(prefect_server) -> None:
    proc = subprocess.run(
        [prefect_executable(), "deployment", "run", "map-city/map-city", "-p", "city=wuhan", "-p", "year=1999"],
        env=prefect_server.env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "1999" in proc.stdout + proc.stderr or "minimum" in (proc.stdout + proc.stderr).lower()


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
