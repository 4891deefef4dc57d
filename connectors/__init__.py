"""Connectors: read department source systems into Arrow record batches."""
