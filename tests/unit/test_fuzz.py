"""Generated hostile order documents: each accepted, or refused with reasons that name
the field; never a crash (a subset here; `make chaos` runs 10,000)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings

from bench.fuzz import check_document, documents


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(documents())
def test_every_generated_document_is_accepted_or_refused_with_named_fields(
        document: Any) -> None:
    assert check_document(document) is None
