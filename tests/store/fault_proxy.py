"""A small fault-injecting HTTP proxy for the S3 tests: sits between obstore and the moto
server on loopback and, following rules set by the test, answers 500/503/SlowDown, drops
connections before forwarding, mid-body or after the server acted, or delays requests."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

ACTIONS = ("500", "503", "slowdown", "drop-before", "drop-mid-body", "drop-after", "delay")


@dataclass
class Rule:
    """Apply ``action`` to the next ``count`` requests whose method is ``method`` (or any)
    and whose path contains ``path``."""

    action: str
    count: int = 1
    method: str | None = None
    path: str = ""
    hits: int = 0


@dataclass
class FaultProxy:
    upstream: str
    rules: list[Rule] = field(default_factory=list)
    injected: list[tuple[str, str, str]] = field(default_factory=list)  # (action, method, path)
    # Every request forwarded: (method, path, arrived, answered), times from perf_counter.
    seen: list[tuple[str, str, float, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, action: str, count: int = 1, method: str | None = None, path: str = "") -> None:
        assert action in ACTIONS, action
        with self.lock:
            self.rules.append(Rule(action, count, method, path))

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()

    def take(self, method: str, path: str) -> str | None:
        with self.lock:
            for rule in self.rules:
                if rule.hits < rule.count and (rule.method in (None, method)) and rule.path in path:
                    rule.hits += 1
                    self.injected.append((rule.action, method, path))
                    return rule.action
        return None

    def start(self) -> FaultProxy:
        proxy = self
        target = urlsplit(self.upstream)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _error(self, status: int, code: str) -> None:
                body = (
                    f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                    f"<Message>injected</Message></Error>"
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _drop(self) -> None:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            def _handle(self) -> None:
                arrived = time.perf_counter()
                body = self._body()
                action = proxy.take(self.command, self.path)
                if action in ("500", "503", "slowdown"):
                    code = {"500": "InternalError", "503": "ServiceUnavailable"}.get(
                        action, "SlowDown"
                    )
                    self._error(500 if action == "500" else 503, code)
                    return
                if action == "drop-before":
                    self._drop()
                    return
                if action == "delay":
                    time.sleep(0.3)
                upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = f"{target.hostname}:{target.port}"
                headers.pop("Transfer-Encoding", None)
                headers["Content-Length"] = str(len(body))
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                upstream.close()
                if action == "drop-after":  # the server acted; the client never hears
                    self._drop()
                    return
                self.send_response(response.status)
                head = self.command == "HEAD"  # its Content-Length is the object's size
                for key, value in response.getheaders():
                    skip = ("transfer-encoding", "connection") + (
                        () if head else ("content-length",)
                    )
                    if key.lower() not in skip:
                        self.send_header(key, value)
                if not head:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if action == "drop-mid-body" and len(data) > 1:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self._drop()
                    return
                self.wfile.write(data)
                with proxy.lock:
                    proxy.seen.append((self.command, self.path, arrived, time.perf_counter()))

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
