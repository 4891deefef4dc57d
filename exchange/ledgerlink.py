"""The exchange's narrow interface to its ledger: open the home's log, tag subjects.

The home holds the exchange's log key (it signs checkpoints and answer receipts), the
subject key (HMAC: citizens become ledger tags) and, in the embedded defaults, the key
and state of one witness — the audit office — that cosigns every checkpoint. In a real
deployment the witness runs in another department; here it shares the machine so that
`make demo` shows the whole protocol.

The ledger's origin (the first line of every checkpoint) is fixed when the home is
created and kept in its config file.
"""

from __future__ import annotations

from pathlib import Path

from exchange.errors import HomeCorrupt
from exchange.home import Home
from exchange.keys import load_private_key
from ledger.checkpoint import CosignatureVerifier, Witness
from ledger.log import Log
from ledger.note import NoteVerifier, Signer

DEFAULT_ORIGIN = "onceonly.example/exchange"
DEFAULT_WITNESS = "audit-office.example/witness"


def origin(home: Home) -> str:
    """The ledger origin recorded in the home's config."""
    value = home.read_config().get("ledger_origin", DEFAULT_ORIGIN)
    if not isinstance(value, str) or not value:
        raise HomeCorrupt(f"{home.config}: ledger_origin must be a non-empty string")
    return value


def witness_name(home: Home) -> str:
    value = home.read_config().get("witness_name", DEFAULT_WITNESS)
    if not isinstance(value, str) or not value:
        raise HomeCorrupt(f"{home.config}: witness_name must be a non-empty string")
    return value


def log_signer(home: Home) -> Signer:
    """The exchange's log key as a signed-note signer named after the origin."""
    return Signer(origin(home), load_private_key(home.log_key))


def log_verifier(home: Home) -> NoteVerifier:
    return log_signer(home).verifier()


def witness(home: Home) -> Witness:
    """The home's witness (the audit office's, in the embedded defaults)."""
    return Witness(
        witness_name(home),
        load_private_key(home.witness_key),
        home.witness_state,
        [log_verifier(home)],
    )


def witness_verifier(home: Home) -> CosignatureVerifier:
    return witness(home).verifier()


def open_log(home: Home, *, path: Path | None = None, cosign: bool = True) -> Log:
    """Open the home's ledger (creating it on first use), with its witness cosigning."""
    home.require()
    witnesses = [witness(home)] if cosign else []
    return Log.open(
        path or home.ledger_store, origin=origin(home), signer=log_signer(home), witnesses=witnesses
    )


def subject_key(home: Home) -> bytes:
    """The HMAC key that turns a resident ID into a ledger subject tag."""
    return home.subject_key.read_bytes()


__all__ = [
    "DEFAULT_ORIGIN",
    "DEFAULT_WITNESS",
    "log_signer",
    "log_verifier",
    "open_log",
    "origin",
    "subject_key",
    "witness",
    "witness_name",
    "witness_verifier",
]
