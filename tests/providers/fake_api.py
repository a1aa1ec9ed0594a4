"""A JSON HTTP API on 127.0.0.1 for provider tests: it records every request; subclasses answer them.

Each fake follows the real API it stands for (paths, headers, request and
response shapes, error bodies); the source is named in its docstring. Tests
start one per test and stop it at the end (its thread and socket go).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, dict[str, str], Any]
FAKE_LENGTH = "X-Fake-Length"  # an answer header: the Content-Length to announce instead of the body's


class FakeAPI:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.errors: dict[str, list[Answer]] = {}  # route -> answers given before the real one
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                record = {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                with fake.lock:
                    fake.requests.append(record)
                status, headers, payload = fake.answer(self.command, self.path.split("?")[0], record)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                declared = headers.pop(FAKE_LENGTH, None)  # a body cut short: more announced than sent
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(declared or len(data)))
                self.end_headers()
                self.wfile.write(data)
                if declared:
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> "FakeAPI":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def scripted(self, route: str) -> Answer | None:
        """The next scripted answer for a route (an error, a delay), if any is left."""
        with self.lock:
            queue = self.errors.get(route)
            return queue.pop(0) if queue else None

    def answer(self, method: str, path: str, record: dict[str, Any]) -> Answer:
        raise NotImplementedError

    def bodies(self, method: str, fragment: str) -> list[Any]:
        """The JSON bodies of the requests whose path contains ``fragment``."""
        return [json.loads(r["body"] or b"{}") for r in self.requests if r["method"] == method and fragment in r["path"]]
