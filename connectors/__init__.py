"""Connectors: read department source systems into Arrow record batches.

`Connector` is the protocol (see `connectors.base`); `load_source(file).open(city=...)`
gives the connector a department's source configuration names.
"""

from connectors.base import PROBLEM, RAW, ROW, Connector
from connectors.config import SourceConfig, load_source, source_files

__all__ = ["PROBLEM", "RAW", "ROW", "Connector", "SourceConfig", "load_source", "source_files"]
