"""The composition root of the command line (``crofuse_cli``): data flows one way, one error handler, documented exit
codes, SIGINT/SIGTERM (README "Exit codes", docs/architecture.md "The command line")."""

from __future__ import annotations

import ast
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crofuse.errors import (
    AOIError,
    CatalogError,
    CheckpointError,
    ClusterError,
    ConfigError,
    DataError,
    EmptySearchError,
    ServiceError,
)
from crofuse_cli import ExitCode, app
from crofuse_cli.exits import describe, exit_code

REPO = Path(__file__).resolve().parent.parent
FORBIDDEN = ("tiling", "flows", "infra")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CROFUSE_DEBUG"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return {**env, **extra}


# -- data flows one way ----------------------------------------------------------------------------------------------
def test_importing_every_crofuse_module_loads_no_tiling_flows_or_infra() -> None:
    """Import every module under crofuse/ in a fresh interpreter: none of them may pull in tiling, flows or infra."""
    code = f"""
import importlib, json, pkgutil, sys
import crofuse
failed = {{}}
names = [m.name for m in pkgutil.walk_packages(crofuse.__path__, "crofuse.")]
for name in names:
    try:
        importlib.import_module(name)
    except Exception as e:
        failed[name] = repr(e)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {FORBIDDEN!r})
print(json.dumps({{"modules": len(names), "failed": failed, "loaded": loaded}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=_env(),
                          cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["modules"] > 50, result  # the walk really covered the package
    assert result["failed"] == {}, result["failed"]
    assert result["loaded"] == [], f"crofuse imported {result['loaded']}"


def _imported_roots(path: Path) -> set[str]:
    """Top-level packages a module imports anywhere (module level or inside functions), also through
    ``importlib.import_module("...")`` and ``__import__("...")`` with a literal name."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                roots.add(node.args[0].value.split(".")[0])
    return roots


def test_no_source_file_under_crofuse_imports_tiling_flows_or_infra() -> None:
    files = sorted((REPO / "crofuse").rglob("*.py"))
    assert len(files) > 50
    offenders = {str(p.relative_to(REPO)): sorted(_imported_roots(p) & set(FORBIDDEN)) for p in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_static_check_sees_nested_and_dynamic_imports(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from infra.stac import StacServer\n"
                   "import importlib\nimportlib.import_module('tiling.cli')\nimport flows.map_city as m\n")
    assert {"infra", "tiling", "flows"} <= _imported_roots(src)


def test_the_console_script_is_the_composition_root() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"crofuse": "crofuse_cli.app:main"}
    commands = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    assert {"train", "evaluate", "calibrate", "info", "cube", "predict", "version", "sample-catalog",
            "training-set", "experiments", "statistics", "products"} <= commands
    from crofuse.products.cli import products_app
    from crofuse.synthetic.cli import sample_app

    assert "serve" in {c.name for c in sample_app.registered_commands}, "the root adds sample-catalog serve"
    assert "serve" in {c.name for c in products_app.registered_commands}, "the root adds products serve"


def test_experiments_run_gets_the_roots_stac_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`crofuse experiments run` serves the sample catalog with what the root lends it (the library has no server)."""
    from crofuse.experiments import runner
    from crofuse_cli.app import _serve_catalog

    seen: dict[str, object] = {}

    def run_suite(suite: str, **kw: object) -> list[Path]:
        seen.update(kw, suite=suite)
        return []

    monkeypatch.setattr(runner, "run_suite", run_suite)
    res = CliRunner().invoke(app, ["experiments", "run", "table2", "--out", str(tmp_path), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert seen["suite"] == "table2" and seen["serve"] is _serve_catalog

    from crofuse.experiments.cli import experiments_app

    res = CliRunner().invoke(experiments_app, ["run", "table2", "--out", str(tmp_path), "--no-progress"])
    assert res.exit_code == 0 and seen["serve"] is None, "on its own the library app has no server to lend"


# -- the exit-code table -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (DataError("x"), ExitCode.FAILED),
        (CheckpointError("x"), ExitCode.FAILED),
        (AOIError("x"), ExitCode.FAILED),
        (ConfigError("x"), ExitCode.USAGE),
        (CatalogError("x", status=503, transient=True), ExitCode.SERVICE),
        (EmptySearchError("x"), ExitCode.SERVICE),
        (ServiceError("x"), ExitCode.SERVICE),
        (ClusterError("x"), ExitCode.SERVICE),
        (OSError(errno.EROFS, "Read-only file system", "/x/y"), ExitCode.FAILED),
        (OSError(errno.ENOSPC, "No space left on device", "/x/y"), ExitCode.FAILED),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), ExitCode.SERVICE),
        (urllib.error.URLError("timed out"), ExitCode.SERVICE),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED),
        (RuntimeError("boom"), ExitCode.BUG),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(int(v)),
)
def test_exit_code_table(exc: BaseException, code: ExitCode) -> None:
    assert exit_code(exc) is code


def test_the_table_values_are_the_documented_ones() -> None:
    assert {c.name: int(c) for c in ExitCode} == {"OK": 0, "FAILED": 1, "USAGE": 2, "SERVICE": 3, "BUG": 70,
                                                 "INTERRUPTED": 130, "TERMINATED": 143}
    readme = (REPO / "README.md").read_text()
    for c in ExitCode:
        assert f"| {int(c)} |" in readme, f"README's exit-code table lacks {int(c)}"


def test_signals_and_os_errors_are_described_in_one_line() -> None:
    from infra.process import Interrupted

    assert exit_code(Interrupted(signal.SIGTERM)) is ExitCode.TERMINATED
    assert exit_code(Interrupted(signal.SIGINT)) is ExitCode.INTERRUPTED
    assert describe(Interrupted(signal.SIGTERM)) == "stopped by SIGTERM"
    assert describe(OSError(errno.EROFS, "Read-only file system", "/x/y")) == \
        "cannot write /x/y: Read-only file system"
    assert describe(OSError(errno.ENOSPC, "No space left on device", "/x/y")) == \
        "cannot write /x/y: No space left on device"
    assert describe(OSError(errno.EXDEV, "Invalid cross-device link", "/a", None, "/b")) == \
        "cannot move /a to /b: Invalid cross-device link"


def test_a_pydantic_error_is_a_usage_error_in_one_line() -> None:
    from pydantic import BaseModel, ValidationError

    class Rule(BaseModel):
        threshold: int

    with pytest.raises(ValidationError) as info:
        Rule(threshold="many")
    assert exit_code(info.value) is ExitCode.USAGE
    text = describe(info.value)
    assert "\n" not in text and text.startswith("invalid Rule: threshold: ")


# -- through the app -----------------------------------------------------------------------------------------------
def test_an_unwritable_output_is_one_line_naming_the_path(tmp_path: Path) -> None:
    """An OSError from a write path (here: the output folder's parent is a file) comes out as one line, exit 1."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = blocker / "catalog"
    args = ["sample-catalog", "build", str(out), "--cities", "wuhan", "--years", "2022", "--size-km", "1",
            "--no-progress"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert lines == [f"error: cannot use {out}: Not a directory"], res.output
    debug = CliRunner().invoke(app, ["--debug", *args])
    assert debug.exit_code == 1 and "Traceback (most recent call last)" in debug.output
    assert debug.output.rstrip().endswith(f"error: cannot use {out}: Not a directory")
    env = CliRunner().invoke(app, args, env={"CROFUSE_DEBUG": "1"})
    assert env.exit_code == 1 and "Traceback (most recent call last)" in env.output


def test_usage_and_configuration_errors_exit_2(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["cube", "wuhan", "--year", "2022", "--out", str(tmp_path), "--no-such-option"])
    assert res.exit_code == 2 and "No such option" in res.output
    res = CliRunner().invoke(app, ["cube", "wuhan", "--year", "2022", "--out", str(tmp_path)])
    assert res.exit_code == 2 and res.output.strip() == "error: give exactly one of --aoi FILE or --bbox W S E N"
    res = CliRunner().invoke(app, ["sample-catalog", "build", str(tmp_path), "--years", "twenty"])
    assert res.exit_code == 2 and "error: --years twenty: give integers" in res.output
    assert "Traceback" not in res.output


def test_a_data_error_exits_1_without_a_traceback(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["training-set", "info", str(tmp_path)])
    assert res.exit_code == 1 and res.output.startswith(f"error: {tmp_path} has no patches.json")
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


# -- SIGINT and SIGTERM in long-running commands ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("command", "sig"),
    [("cube", signal.SIGTERM), ("cube", signal.SIGINT), ("training-set", signal.SIGTERM)],
    ids=["cube-SIGTERM", "cube-SIGINT", "training-set-build-SIGTERM"],
)
def test_a_signal_stops_a_long_command_with_128_plus_the_signal(tmp_path: Path, command: str, sig: int) -> None:
    """A command waiting on a catalog that never answers stops on SIGTERM (as on Ctrl-C) after its cleanup, with
    one line and 143 (130), and leaves no finished output behind."""
    with socket.socket() as catalog:  # accepts connections (the kernel's backlog), never answers
        catalog.bind(("127.0.0.1", 0))
        catalog.listen(8)
        catalog.settimeout(120)
        url = f"http://127.0.0.1:{catalog.getsockname()[1]}"
        out = tmp_path / "out"
        if command == "cube":
            args = ["cube", "wuhan", "--year", "2022", "--catalog", url, "--bbox", "114.25", "30.55", "114.26",
                    "30.56", "--out", str(out), "--no-progress"]
        else:
            args = ["training-set", "build", str(out), "--city", "wuhan", "--years", "2022", "--catalog", url,
                    "--no-progress"]
        proc = subprocess.Popen([sys.executable, "-m", "crofuse_cli", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path)
        try:
            conn, _ = catalog.accept()  # the command is now waiting for the catalog's answer
            with conn:
                time.sleep(0.2)
                proc.send_signal(sig)
                _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 128 + sig, err
    assert err.strip().splitlines()[-1] == f"error: stopped by {signal.Signals(sig).name}"
    assert "Traceback" not in err
    finished = [p for p in out.rglob("*") if p.name in ("inputs.zarr", "patches.json")] if out.exists() else []
    assert finished == [], finished
