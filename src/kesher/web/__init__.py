"""HTTP: the JSON API under /api/v1, the UI pages, and public endpoints."""
