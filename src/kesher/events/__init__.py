"""Behaviour in: events, their ingest, per-contact rollups, the product catalogue."""
