"""Flower, locked down: no page on another site can read it or drive it.

Flower 2.2 opened without authentication (FLOWER_UNAUTHENTICATED_API) answers
every origin (`Access-Control-Allow-Origin: *`) and skips its cross-site check,
so any web page the operator opens can apply tasks through it (a restock of
1000 units was applied that way). Here Flower runs in one of two modes:

* basic auth (PIPELINE_FLOWER_BASIC_AUTH, or a password made up at start and
  printed once): Flower's own checks refuse cross-site requests;
* unauthenticated, only when asked for (PIPELINE_FLOWER_UNAUTHENTICATED_API)
  and only on loopback: the same cross-site refusal is applied to every
  request, and no CORS header is ever sent.

`harden()` patches Flower's BaseHandler; it checks the Flower release it was
written for and fails loudly on any other.
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import urlparse

__all__ = ["cross_site", "harden", "main"]

FLOWER_SERIES = "2.2."
SAME_SITE = ("same-origin", "none")  # "none": typed in the address bar, a bookmark


def cross_site(headers: Any, host: str) -> str | None:
    """Why a request comes from another site, or None (the browser's own headers)."""
    site = headers.get("Sec-Fetch-Site")
    if site and site not in SAME_SITE:
        return f"Sec-Fetch-Site: {site}"
    origin = headers.get("Origin")
    if origin and urlparse(origin).netloc != host:
        return f"Origin {origin} is not {host}"
    return None


def harden() -> None:
    import flower
    import tornado.web
    from flower.api import BaseApiHandler
    from flower.views import BaseHandler

    if not flower.__version__.startswith(FLOWER_SERIES):
        raise ImportError(f"pipeline.monitoring.flower was written for flower "
                          f"{FLOWER_SERIES}x, found {flower.__version__}")

    def set_default_headers(self: Any) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")  # and never a CORS header

    def refuse_cross_site(self: Any) -> None:
        why = cross_site(self.request.headers, self.request.host)
        if why:
            raise tornado.web.HTTPError(403, f"cross-site request refused ({why})")

    api_prepare = BaseApiHandler.prepare

    def api(self: Any) -> None:
        refuse_cross_site(self)
        api_prepare(self)

    BaseHandler.set_default_headers = set_default_headers
    BaseHandler.prepare = refuse_cross_site
    BaseApiHandler.prepare = api


def main() -> None:
    """`python -m pipeline.monitoring.flower ARGS...`: celery ARGS with Flower hardened
    and its event intake batched (pipeline.monitoring.flower_feed)."""
    from pipeline.monitoring.flower_feed import lighten

    harden()
    lighten()
    from celery.bin.celery import main as celery_main

    sys.argv = ["celery", *sys.argv[1:]]
    celery_main()


if __name__ == "__main__":
    main()
