"""The access ledger: an append-only, signed, tamper-evident log of every exchange."""
