"""The `onceonly` command, run as a real process the way a user runs it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer

from exchange.cli import app

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
    for name in typer.main.get_command(app).commands:  # type: ignore[attr-defined]
        assert name in result.stdout


def _leaf_commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = []
    for name, command in group.commands.items():
        path = (*prefix, name)
        if hasattr(command, "commands"):
            assert command.help, f"{' '.join(path)} has no help text"
            found += _leaf_commands(command, path)
        else:
            found.append((path, command))
    return found


def test_every_command_and_option_is_documented() -> None:
    commands = _leaf_commands(typer.main.get_command(app))
    assert len(commands) >= 12, "the CLI lost commands"
    for path, command in commands:
        name = " ".join(path)
        assert command.help and len(command.help) > 20, f"{name} has no help text"
        for param in command.params:
            if param.name != "help":
                assert getattr(param, "help", None), f"{name} --{param.name} has no help"
        shown = run(*path, "--help")
        assert shown.returncode == 0 and "Usage" in shown.stdout, name


def test_init_creates_a_private_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = run("init", "--json", home=home)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["initialised"] is True and info["home"] == str(home)
    for folder in (home, home / "keys", home / "ledger"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    keys = sorted((home / "keys").iterdir())
    assert [k.name for k in keys] == ["exchange-log.pem", "ledger-subject.key", "witness.pem"]
    for key in [*keys, home / "exchange.duckdb", home / "ledger/ledger.sqlite"]:
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
    files = json.loads(result.stdout)["files"]
    assert files["exchange_db"] == {
        "path": str(tmp_path / "exchange.duckdb"),
        "exists": True,
        "mode": "0600",
    }
    assert files["ledger_store"] == {
        "path": str(tmp_path / "ledger/ledger.sqlite"),
        "exists": True,
        "mode": "0600",
    }


def test_init_never_takes_over_a_folder_with_other_files(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    (tmp_path / "someone-elses.txt").write_text("keep me")
    result = run("init", home=tmp_path)
    assert result.returncode == 1
    assert "is not empty" in result.stderr
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["someone-elses.txt"]


def test_a_corrupt_home_is_one_clear_line(tmp_path: Path) -> None:
    run("init", home=tmp_path)
    (tmp_path / "onceonly.json").write_text("{not json")
    result = run("status", home=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot read") and "Traceback" not in result.stderr


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


def test_user_text_is_never_read_as_markup(tmp_path: Path) -> None:
    odd = run(
        "synth", "--persons", "20", "--seed", "1", "--out", str(tmp_path), "--today", "[/red]x"
    )
    assert odd.returncode == 1
    assert odd.stderr.strip() == "error: --today must be a date as YYYY-MM-DD, got '[/red]x'"
    home = tmp_path / "home-[dim]x"
    missing = run("status", home=home)
    assert str(home) in missing.stderr


def test_file_system_errors_are_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run("synth", "--persons", "20", "--seed", "1", "--out", str(blocker))
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and str(blocker) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_demo_publishes_the_city_and_nothing_is_lost(tmp_path: Path) -> None:
    home, city = tmp_path / "home", tmp_path / "city"
    args = ("demo", "--city", str(city), "--persons", "800", "--json")
    result = run(*args, home=home)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    planted = sum(report["city"]["faults_by_kind"].values())
    publications = report["publications"]
    assert len(publications) == 13
    for p in publications:
        assert p["read"] == p["accepted"] + p["quarantined"]
    assert sum(p["quarantined"] for p in publications) == planted
    again = json.loads(run(*args, home=home).stdout)  # a second run changes nothing
    assert all(p["unchanged"] for p in again["publications"])
    shown = run("quarantine", "show", "1", "--json", home=home)
    assert shown.returncode == 0
    quarantine = json.loads(shown.stdout)
    assert quarantine["rows_quarantined"] == publications[0]["quarantined"]
    listed = json.loads(run("dataset", "list", "--json", home=home).stdout)
    assert {d["dataset"] for d in listed} == {p["dataset"] for p in publications}


def test_schema_evolution_through_the_cli(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run("init", home=home).returncode == 0
    assert run("dept", "add", "health", "--name", "卫健", home=home).returncode == 0
    contract = Path("schemas/datasets/deaths/1.0.0.json")
    assert run("dataset", "register", str(contract), home=home).returncode == 0
    schema = json.loads(contract.read_text("utf-8"))
    schema["x-onceonly"]["version"] = "2.0.0"
    schema["properties"]["age"]["maximum"] = 100  # records valid before would be refused
    schema["required"].append("hospital_code")
    schema["properties"]["hospital_code"] = {"type": "string"}
    proposed = tmp_path / "2.0.0.json"
    proposed.write_text(json.dumps(schema, ensure_ascii=False), "utf-8")
    checked = run("schema", "check", str(proposed), "--against", "deaths", home=home)
    assert checked.returncode == 1
    assert "age" in checked.stderr and "hospital_code" in checked.stderr
    refused = run("dataset", "register", str(proposed), home=home)
    assert refused.returncode == 1 and "age" in refused.stderr
    schema["properties"]["age"]["maximum"] = 120
    schema["required"].remove("hospital_code")  # an optional new field: BACKWARD compatible
    proposed.write_text(json.dumps(schema, ensure_ascii=False), "utf-8")
    assert run("schema", "check", str(proposed), "--against", "deaths", home=home).returncode == 0
    assert run("dataset", "register", str(proposed), home=home).returncode == 0
    shown = json.loads(run("dataset", "show", "deaths", "--json", home=home).stdout)
    assert [v["version"] for v in shown["versions"]] == ["1.0.0", "2.0.0"]
