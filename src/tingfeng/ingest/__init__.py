"""Ingest: raw items from any connector → analysed, de-duplicated, stored and indexed posts."""
