"""Connectors: one module per kind of source, all behind the contract in `base`."""
