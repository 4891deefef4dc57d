"""Errors raised by the ledger; the CLI catches `LedgerError` once."""


class LedgerError(Exception):
    """Base for every ledger failure."""


class ProofError(LedgerError):
    """A Merkle proof or a checkpoint did not verify."""
