"""The store's clock: timezone-aware UTC, the one place naive values are fixed.

SQLite hands DateTime(timezone=True) columns back naive (in UTC, as written);
PostgreSQL hands them back aware. `aware` makes both the same.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["aware", "aware_or_none", "now"]


def now() -> datetime:
    return datetime.now(UTC)


def aware(stamp: datetime) -> datetime:
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


def aware_or_none(stamp: datetime | None) -> datetime | None:
    """`aware` for a nullable column."""
    return aware(stamp) if stamp is not None else None
