"""Generated order documents, hostile ones above all, and what must become of each.

Every document is either accepted (parse_order returns an Order the store takes)
or refused with reasons that each name a field (`items.3.quantity: ...`, or
`order: ...` for the document as a whole); nothing raises anything else. Used by
the unit tier (a few hundred examples) and by `make chaos` (10,000, plus
`pipeline submit` on files of them).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.settings import PROJECT_ROOT
from pipeline.dev.demo import sample_order
from pipeline.domain import parse_order
from pipeline.errors import InvalidOrder

__all__ = ["check_document", "documents", "fuzz_submissions"]

SEGMENT = r'(?:[A-Za-z0-9_]+|"(?:[^"\\]|\\.)*")'
FIELD = re.compile(rf"^(?:order|{SEGMENT}(?:\.{SEGMENT})*): |^\.\.\. and \d+ more")
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=80),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.just("9" * 5000), st.just("\x00"), st.just("a:b c"), st.just("tok_visa"))


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def _mutate(document: dict[str, Any], draw: Any) -> dict[str, Any]:
    paths = [("orderId",), ("customerId",), ("totalAmount",), ("currency",), ("priority",),
             ("items",), ("items", 0, "quantity"), ("items", 0, "price"),
             ("items", 0, "productId"), ("payment",), ("payment", "token"),
             ("shippingAddress", "postalCode"), ("shippingAddress", "country"), ("contact",),
             ("contact", "email"), ("contact", "phone")]
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(paths))
        kind = draw(st.sampled_from(["scalar", "delete", "nest", "extra", "many"]))
        target: Any = document
        try:
            for key in path[:-1]:
                target = target[key]
            last = path[-1]
            if kind == "delete" and isinstance(target, dict):
                target.pop(last, None)
            elif kind == "nest":
                target[last] = nested(draw(st.integers(50, 3000)))
            elif kind == "extra" and isinstance(target, dict):
                target[draw(st.text(min_size=1, max_size=10))] = draw(scalars)
            elif kind == "many" and path == ("items",):
                target[last] = target[last] * draw(st.sampled_from([2, 101, 10_000]))
            else:
                target[last] = draw(scalars)
        except (KeyError, IndexError, TypeError):
            continue
    return document


@st.composite
def documents(draw: Any) -> Any:
    base = sample_order(draw(st.sampled_from(["single", "multi", "vip"])), draw(
        st.integers(0, 10**6)))
    if draw(st.integers(0, 20)) == 0:
        return draw(st.one_of(scalars, st.lists(scalars, max_size=5)))
    return _mutate(base, draw)


def check_document(document: Any) -> str | None:
    """None when the outcome is right; otherwise what was wrong."""
    try:
        parse_order(document)
    except InvalidOrder as error:
        unnamed = [p for p in error.problems if not FIELD.match(p)]
        if unnamed or not error.problems:
            return f"reasons that name no field: {unnamed or error.problems}"
    except Exception as error:  # anything else is a crash at the door
        return f"{type(error).__name__}: {str(error)[:200]}"
    return None


def fuzz_submissions(count: int, work: Path) -> dict[str, Any]:
    """`count` documents through parse_order, and files of them through `pipeline submit`."""
    wrong: list[str] = []
    seen: list[Any] = []

    @settings(max_examples=count, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(documents())
    def each(document: Any) -> None:
        problem = check_document(document)
        if problem:
            wrong.append(problem)
        if len(seen) < 200:
            seen.append(document)

    each()
    batch = work / "fuzz.jsonl"
    lines = []
    for document in seen:
        try:
            lines.append(json.dumps(document))
        except RecursionError:  # deeper than json can write: written by hand below
            continue
    deep = '{"orderId": "deep", "items": ' + "[" * 5000 + "]" * 5000 + "}"
    batch.write_text("\n".join([*lines, deep, "{not json"]) + "\n")
    done = subprocess.run([sys.executable, "-m", "pipeline", "submit", str(batch)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin",
                               "PIPELINE_DATABASE_URL": f"sqlite:///{work / 'fuzz.db'}",
                               "PIPELINE_SQS_ENDPOINT_URL": "http://127.0.0.1:9"})
    cli_ok = done.returncode == 1 and "Traceback" not in done.stderr and \
        "nothing submitted" in done.stderr
    return {"documents": count, "wrongOutcomes": len(wrong), "examples": wrong[:10],
            "cliFile": {"lines": len(lines) + 2, "exit": done.returncode,
                        "refusedWithReasons": cli_ok},
            "passed": not wrong and cli_ok}
