"""A deterministic demo store: Hebrew contacts and a year of shop events, for demos and load tests."""
