"""The store's clock: timezone-aware UTC, the one place naive values are fixed.

SQLite hands DateTime(timezone=True) columns back naive (in UTC, as written);
PostgreSQL hands them back aware. `aware` makes both the same.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["aware", "now"]


def now() -> datetime:
    return datetime.now(UTC)


def aware(stamp: datetime) -> datetime:
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)
