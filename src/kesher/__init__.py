"""Kesher: self-hosted marketing automation and analytics."""

__version__ = "0.1.0"
