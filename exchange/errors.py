"""Errors raised by the exchange; the CLI catches `ExchangeError` once."""


class ExchangeError(Exception):
    """Base for every exchange failure that a user can act on."""


class HomeMissing(ExchangeError):
    """The onceonly home directory has not been created yet."""


class HomeExists(ExchangeError):
    """`init` was asked to create a home that is already there."""


class HomeCorrupt(ExchangeError):
    """The home's configuration cannot be read."""


class InvalidArgument(ExchangeError):
    """A value given by the user is outside what the command accepts."""
