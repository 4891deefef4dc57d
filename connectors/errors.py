"""Errors raised by connectors; the CLI catches `ConnectorError` once."""


class ConnectorError(Exception):
    """Base for every connector failure: a source that cannot be opened or read."""


class SourceUnreadable(ConnectorError):
    """The source as a whole cannot be read (missing, unreadable header, unknown encoding).

    Single records that cannot be read are not errors: connectors yield them with their
    problem, for the quarantine.
    """


class SourceConfigError(ConnectorError):
    """A source configuration file is missing, malformed or names an unknown connector."""
