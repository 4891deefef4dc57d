"""The onceonly home: the embedded defaults (exchange database, ledger store, keys).

`ONCEONLY_HOME` names it; the default is `./.onceonly`. Folders are 0700 and key files
0600, created with O_EXCL so an existing key is never overwritten.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange.errors import HomeCorrupt, HomeExists, HomeMissing

HOME_ENV = "ONCEONLY_HOME"
DEFAULT_HOME = ".onceonly"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Home:
    """Paths inside one onceonly home directory."""

    root: Path

    @classmethod
    def locate(cls, path: Path | str | None = None) -> Home:
        """The home given, else `ONCEONLY_HOME`, else `./.onceonly`."""
        chosen = path or os.environ.get(HOME_ENV) or DEFAULT_HOME
        return cls(Path(chosen).expanduser().absolute())

    @property
    def config(self) -> Path:
        return self.root / "onceonly.json"

    @property
    def exchange_db(self) -> Path:
        return self.root / "exchange.duckdb"

    @property
    def ledger_dir(self) -> Path:
        return self.root / "ledger"

    @property
    def ledger_store(self) -> Path:
        return self.ledger_dir / "ledger.sqlite"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def log_key(self) -> Path:
        """The exchange's Ed25519 key: signs checkpoints and answer receipts."""
        return self.keys_dir / "exchange-log.pem"

    @property
    def witness_key(self) -> Path:
        """The embedded witness's Ed25519 key (the audit office's, in a real deployment)."""
        return self.keys_dir / "witness.pem"

    @property
    def witness_state(self) -> Path:
        """The last checkpoint the embedded witness cosigned, per log origin."""
        return self.root / "witness" / "state.json"

    @property
    def department_keys(self) -> Path:
        """Departments' signing keys, for departments whose steward works on this machine."""
        return self.keys_dir / "departments"

    @property
    def packages(self) -> Path:
        """Every ingested publication package, kept for audit and re-verification."""
        return self.root / "packages"

    @property
    def subject_key(self) -> Path:
        """The HMAC key that turns citizens into ledger tags."""
        return self.keys_dir / "ledger-subject.key"

    def exists(self) -> bool:
        return self.config.is_file()

    def require(self) -> Home:
        """This home, or a clear error saying how to create it."""
        if not self.exists():
            raise HomeMissing(
                f"no onceonly home at {self.root}: run `onceonly init` "
                f"(or set {HOME_ENV} to an existing home)"
            )
        return self

    def read_config(self) -> dict[str, object]:
        try:
            config = json.loads(self.config.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as problem:
            raise HomeCorrupt(f"cannot read {self.config}: {problem}") from problem
        if not isinstance(config, dict):
            raise HomeCorrupt(f"{self.config} does not hold a JSON object")
        return config

    def describe(self) -> dict[str, object]:
        """What the home holds: each file with whether it exists and its mode."""
        config = self.read_config() if self.exists() else {}
        files = {
            "exchange_db": self.exchange_db,
            "ledger_store": self.ledger_store,
            "log_key": self.log_key,
            "witness_key": self.witness_key,
            "subject_key": self.subject_key,
        }
        return {
            "home": str(self.root),
            "initialised": self.exists(),
            "created_at": config.get("created_at"),
            "files": {
                name: {
                    "path": str(path),
                    "exists": path.exists(),
                    "mode": f"{path.stat().st_mode & 0o777:04o}" if path.exists() else None,
                }
                for name, path in files.items()
            },
        }


def write_secret(path: Path, data: bytes) -> None:
    """Create a file readable by its owner only; never overwrite one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask says
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


# What a home holds; a half-made home (init killed midway) may be finished, but init
# never takes over a folder holding anything else.
_HOME_ENTRIES = {
    "keys",
    "ledger",
    "packages",
    "witness",
    "exchange.duckdb",
    "exchange.duckdb.wal",
    "onceonly.json.tmp",
}


def _new_key_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def init_home(
    home: Home,
    *,
    now: dt.datetime | None = None,
    ledger_origin: str = "onceonly.example/exchange",
    witness_name: str = "audit-office.example/witness",
) -> Home:
    """Create a home with fresh keys and an empty exchange database."""
    if home.exists():
        raise HomeExists(f"a onceonly home already exists at {home.root}")
    if home.root.exists() and not home.root.is_dir():
        raise HomeExists(f"{home.root} exists and is not a folder")
    if home.root.is_dir():
        strangers = sorted(p.name for p in home.root.iterdir() if p.name not in _HOME_ENTRIES)
        if strangers:
            raise HomeExists(
                f"{home.root} is not empty ({', '.join(strangers[:3])}…): "
                "choose an empty or new folder for the onceonly home"
            )
    stamp = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    for folder in (home.root, home.keys_dir, home.ledger_dir):
        if not folder.exists():
            folder.mkdir(mode=0o700, parents=True)
            folder.chmod(0o700)  # mkdir's mode is filtered by the umask
    for key_path in (home.log_key, home.witness_key):
        if not key_path.exists():
            write_secret(key_path, _new_key_pem())
    if not home.subject_key.exists():
        write_secret(home.subject_key, secrets.token_bytes(32))

    from exchange.store import ExchangeStore  # DuckDB: `onceonly --help` need not load it

    ExchangeStore(home.exchange_db).close()
    home.exchange_db.chmod(0o600)
    from ledger.store import LedgerStore

    LedgerStore(home.ledger_store).close()
    home.ledger_store.chmod(0o600)  # SQLite gives its -wal and -shm files the same mode
    # The config file is written last: its presence is what marks a complete home.
    config = {
        "format_version": FORMAT_VERSION,
        "created_at": stamp,
        "ledger_origin": ledger_origin,
        "witness_name": witness_name,
    }
    tmp = home.config.with_suffix(".tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, home.config)
    return home
