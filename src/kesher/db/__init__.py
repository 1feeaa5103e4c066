"""Database layer: declarative base, engine and sessions, migrations."""

from kesher.db.base import Base, utcnow
from kesher.db.session import Database

__all__ = ["Base", "Database", "utcnow"]
