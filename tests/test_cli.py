"""The `onceonly` command, run as a real process the way a user runs it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

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


def test_every_command_and_option_is_documented() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    assert commands, "no commands registered"
    for name, command in commands.items():
        assert command.help and len(command.help) > 20, f"{name} has no help text"
        for param in command.params:
            if param.name != "help":
                assert getattr(param, "help", None), f"{name} --{param.name} has no help"
        shown = run(name, "--help")
        assert shown.returncode == 0 and "Usage" in shown.stdout


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
    files = json.loads(result.stdout)["files"]
    assert files["exchange_db"] == {
        "path": str(tmp_path / "exchange.duckdb"),
        "exists": True,
        "mode": "0600",
    }
    assert files["ledger_store"]["exists"] is False  # the ledger creates its own store


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
