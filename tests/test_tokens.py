"""The token store remembers verified tokens only while the token file is unchanged."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from exchange.tokens import TokenStore


def test_a_remembered_token_is_forgotten_by_any_revocation(tmp_path: Path) -> None:
    """Two stores on one file, as the service and `onceonly token revoke` are."""
    serving, cli = TokenStore(tmp_path / "t.sqlite"), TokenStore(tmp_path / "t.sqlite")
    try:
        issued = [serving.issue(f"caseworker:hrss/u{n}") for n in range(20)]
        for token, _ in issued:
            assert serving.authenticate(token) is not None  # remembered
        for n, (token, info) in enumerate(issued):
            cli.revoke(info.id)
            assert serving.authenticate(token) is None, f"token {n} outlived its revocation"
            for later, _ in issued[n + 1 :]:
                assert serving.authenticate(later) is not None
    finally:
        serving.close()
        cli.close()


def test_a_store_in_wal_mode_remembers_nothing(tmp_path: Path) -> None:
    """WAL mode does not keep the header's change counter: no memory, revocation still works."""
    path = tmp_path / "t.sqlite"
    TokenStore(path).close()
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
    serving, cli = TokenStore(path), TokenStore(path)
    try:
        token, info = serving.issue("caseworker:hrss/u")
        assert serving.authenticate(token) is not None
        assert serving.authenticate(token) is not None
        cli.revoke(info.id)
        assert serving.authenticate(token) is None
    finally:
        serving.close()
        cli.close()
