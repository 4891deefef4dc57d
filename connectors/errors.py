"""Errors raised by connectors; the CLI catches `ConnectorError` once."""


class ConnectorError(Exception):
    """Base for every connector failure: a source that cannot be opened or read."""
