"""API tokens: one per principal, stored only as a hash, revocable.

A token is ``oo_<id>_<secret>``: the id (8 hex characters) names it in lists and
revocations; the exchange keeps ``SHA-256(token)`` and never the token itself, so a
copy of the home does not hand out working credentials. A token is bound to its
principal (`steward:`, `caseworker:` or `auditor:<department>/<user>`), hence to a
department and a role.

`authenticate` remembers the tokens it has verified, for as long as the token file is
unchanged: SQLite increments the *file change counter* in the database header (bytes
24-27) on every committed write in rollback-journal mode, and the store reads it through
a shared memory map -- no query, no system call, no release of the GIL on a serving
process's event loop. A revocation by any process (`onceonly token revoke`) is a commit,
so the next authentication after it returns sees a new counter, drops what it
remembered and asks the database. In WAL mode the counter is not kept up: the store
then remembers nothing. The map follows the file that was opened: a token file replaced
by another one (a restore from a backup) is seen only by a restarted service — and one
overwritten in place while the service runs could be cut short under the map, which
kills the process (SIGBUS): restore tokens with the service stopped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import mmap
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from exchange.errors import ExchangeError, InvalidArgument
from exchange.home import Home
from exchange.policy import Principal, parse_principal
from exchange.store import utc

_DDL = """
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    principal TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    revoked_at TEXT
)
"""


class UnknownToken(ExchangeError):
    """No token with that id."""


@dataclass(frozen=True)
class TokenInfo:
    id: str
    principal: str
    issued_at: str
    revoked_at: str | None


def tokens_path(home: Home) -> Path:
    return home.root / "tokens.sqlite"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    def __init__(self, path: Path) -> None:
        fresh = not path.exists()
        self._con = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        if fresh:
            path.chmod(0o600)
        self._con.execute(_DDL)
        self._lock = threading.Lock()
        # The header's first page, shared with every process that writes the file.
        with path.open("rb") as file:
            self._header = mmap.mmap(file.fileno(), 100, access=mmap.ACCESS_READ)
        self._verified: dict[str, Principal] = {}  # token -> principal, while unchanged
        self._verified_in = b""  # the header's counter those were verified under

    @classmethod
    def open(cls, home: Home) -> TokenStore:
        return cls(tokens_path(home.require()))

    def close(self) -> None:
        self._header.close()
        self._con.close()

    def issue(self, principal: str, *, now: dt.datetime | None = None) -> tuple[str, TokenInfo]:
        """A new token for ``principal``; the only time the token itself is seen."""
        if parse_principal(principal) is None:
            raise InvalidArgument(
                f"not a principal: {principal!r} (steward|caseworker|auditor:<department>/<user>)"
            )
        token_id = secrets.token_hex(4)
        token = f"oo_{token_id}_{secrets.token_urlsafe(32)}"
        issued = utc(now).isoformat(timespec="seconds")
        with self._lock:
            self._con.execute(
                "INSERT INTO tokens VALUES (?, ?, ?, ?, NULL)",
                [token_id, _digest(token), principal, issued],
            )
        return token, TokenInfo(token_id, principal, issued, None)

    def revoke(self, token_id: str, *, now: dt.datetime | None = None) -> TokenInfo:
        with self._lock:
            changed = self._con.execute(
                "UPDATE tokens SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?",
                [utc(now).isoformat(timespec="seconds"), token_id],
            ).rowcount
        if not changed:
            raise UnknownToken(f"no token {token_id!r} (onceonly token list)")
        return next(t for t in self.list() if t.id == token_id)

    def list(self) -> list[TokenInfo]:
        with self._lock:
            rows = self._con.execute(
                "SELECT id, principal, issued_at, revoked_at FROM tokens ORDER BY issued_at, id"
            ).fetchall()
        return [TokenInfo(*row) for row in rows]

    def authenticate(self, token: str) -> Principal | None:
        """The principal a valid, unrevoked token stands for; None otherwise."""
        if not token.startswith("oo_") or len(token) > 200:
            return None
        # Read before the query: a commit after this read changes the counter, so what
        # the query finds is never remembered past a change it may have missed.
        version = self._version()
        if version and version == self._verified_in:
            found = self._verified.get(token)
            if found is not None:
                return found
        with self._lock:
            row = self._con.execute(
                "SELECT sha256, principal, revoked_at FROM tokens WHERE id = ?", [token[3:11]]
            ).fetchone()
        if row is None or row[2] is not None:
            return None
        if not hmac.compare_digest(row[0], _digest(token)):
            return None
        principal = parse_principal(row[1])
        if principal is not None and version:
            with self._lock:
                if version != self._verified_in or len(self._verified) >= _REMEMBERED:
                    self._verified = {}
                    self._verified_in = version
                self._verified[token] = principal
        return principal

    def _version(self) -> bytes:
        """The file change counter; b'' when it cannot be trusted (WAL mode, say)."""
        header = self._header[:28]
        # Bytes 18-19: file format write/read versions, 1 for rollback journals, 2 for WAL.
        if header[:16] != b"SQLite format 3\x00" or header[18] != 1 or header[19] != 1:
            return b""
        return header[24:28]


_REMEMBERED = 4096  # verified tokens kept at most (one per principal is the usual)
