"""The `onceonly` command, run as a real process the way a user runs it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ONCEONLY = Path(sys.executable).with_name("onceonly")


def run(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    env["COLUMNS"] = "200"
    if home is not None:
        env["ONCEONLY_HOME"] = str(home)
    return subprocess.run(
        [str(ONCEONLY), *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_help_lists_every_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("init", "status", "synth"):
        assert command in result.stdout


@pytest.mark.parametrize("command", ["init", "status", "synth"])
def test_every_command_has_help(command: str) -> None:
    result = run(command, "--help")
    assert result.returncode == 0
    assert "Usage" in result.stdout and len(result.stdout.splitlines()) > 4


def test_init_creates_a_private_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = run("init", "--json", home=home)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["initialised"] is True and info["home"] == str(home)
    for folder in (home, home / "keys", home / "ledger"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    keys = sorted((home / "keys").iterdir())
    assert [k.name for k in keys] == ["exchange-log.pem", "ledger-subject.key"]
    for key in [*keys, home / "exchange.duckdb"]:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in (home / "keys/exchange-log.pem").read_bytes()


def test_init_refuses_to_overwrite_a_home(tmp_path: Path) -> None:
    assert run("init", home=tmp_path).returncode == 0
    key = (tmp_path / "keys/exchange-log.pem").read_bytes()
    result = run("init", home=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: a onceonly home already exists")
    assert len(result.stderr.strip().splitlines()) == 1
    assert (tmp_path / "keys/exchange-log.pem").read_bytes() == key


def test_commands_that_need_a_home_say_how_to_make_one(tmp_path: Path) -> None:
    result = run("status", home=tmp_path / "nowhere")
    assert result.returncode == 1
    assert "onceonly init" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_reports_an_existing_home(tmp_path: Path) -> None:
    run("init", home=tmp_path)
    result = run("status", "--json", home=tmp_path)
    assert result.returncode == 0
    assert json.loads(result.stdout)["exchange_db"] == str(tmp_path / "exchange.duckdb")


def test_synth_writes_the_city_and_summarises_it(tmp_path: Path) -> None:
    out = tmp_path / "city"
    result = run("synth", "--persons", "600", "--seed", "7", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["persons"] == 600
    assert len(summary["datasets"]) == 13
    for dataset in summary["datasets"]:
        assert (out / dataset["path"].split("#")[0]).is_file()
    table = run("synth", "--persons", "600", "--seed", "7", "--out", str(tmp_path / "again"))
    assert table.returncode == 0
    assert "household_register" in table.stdout and "600 persons" in table.stdout


def test_usage_errors_exit_2() -> None:
    assert run("synth", "--persons", "100").returncode == 2  # --seed and --out missing
    assert run("synth", "--persons", "many", "--seed", "1", "--out", "x").returncode == 2
    assert run("no-such-command").returncode == 2


def test_domain_errors_are_one_line_and_tracebacks_need_debug(tmp_path: Path) -> None:
    args = ("synth", "--persons", "5", "--seed", "1", "--out", str(tmp_path))
    plain = run(*args)
    assert plain.returncode == 1
    assert plain.stderr.strip() == "error: --persons must be at least 10, got 5"
    debug = run("--debug", *args)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "InvalidArgument" in debug.stderr
