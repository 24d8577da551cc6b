"""A local AWS endpoint for the hand-signed-call tests: a real HTTP server that
records each request and answers what its test queued."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class StandIn:
    """Records every POST as {"headers", "body"}; `answer` writes the reply."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stand_in.requests.append({"headers": {k.lower(): v for k, v in
                                                      self.headers.items()},
                                          "body": body, "path": self.path})
                stand_in.answer(self)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    @staticmethod
    def reply(handler: BaseHTTPRequestHandler, status: int, content_type: str, data: bytes,
              extra: dict[str, str] | None = None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (extra or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def by_botocore(self) -> list[bool]:
        # botocore stamps every request it sends with an invocation id; ours carry none
        return ["amz-sdk-invocation-id" in r["headers"] for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
