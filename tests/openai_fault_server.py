"""A fault-injecting OpenAI-compatible endpoint on 127.0.0.1, for the tests of ``engine.name: openai``.

It speaks the subset of the API the openai engine uses (POST /v1/completions, GET /health) over HTTP/1.1 with
keep-alive, and before answering a request it applies the fault its ``plan`` gives for that request's attempt:
``"429"`` (with ``Retry-After``), ``"500"``, ``"503"``, ``"400"``, ``"401"`` (these echo the request's
Authorization header in their message, as careless servers do), ``"slow"`` (answers after
``slow_seconds``, past the client's timeout) or ``"drop"`` (closes the connection without a word). The answer
itself comes from ``upstream`` (a real ``vllm serve``: the endpoint is then a proxy) or, without one, from a
deterministic fake model: text from a hash of the seed and the prompt, log-probabilities from the token ids.
Every request is recorded (path, body, fault, Authorization header) for the tests to check.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlsplit

Plan = Callable[[dict, int], "str | None"]  # (request body, attempt number from 0) -> fault or None

_WORDS = ("how", "do", "i", "sort", "a", "list", "in", "python", "explain", "the", "module", "write")


def by_seed(faults: dict[int, list[str]]) -> Plan:
    """The faults of successive attempts of the request with each seed (``faults[seed][attempt]``)."""
    return lambda body, attempt: (faults.get(body.get("seed"), []) + [None] * (attempt + 1))[attempt]  # type: ignore[operator]


@dataclass
class Seen:
    path: str
    body: dict
    fault: str | None
    authorization: str | None


class FaultyEndpoint:
    def __init__(
        self,
        plan: Plan = lambda body, attempt: None,
        upstream: str | None = None,
        slow_seconds: float = 2.0,
        retry_after: str = "0",
        logprobs: bool = True,
    ):
        self.plan, self.upstream, self.slow_seconds = plan, upstream, slow_seconds
        self.retry_after, self.logprobs = retry_after, logprobs
        self.seen: list[Seen] = []
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet: pytest shows what matters
                pass

            def do_GET(self):
                endpoint._reply(self, 200, b"")

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint._handle(self, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FaultyEndpoint":
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def faults(self) -> list[str]:
        return [s.fault for s in self.seen if s.fault]

    def _handle(self, handler: BaseHTTPRequestHandler, body: dict) -> None:
        key = json.dumps(body, sort_keys=True)
        with self._lock:
            attempt = self._attempts.get(key, 0)
            self._attempts[key] = attempt + 1
            fault = self.plan(body, attempt)
            self.seen.append(Seen(handler.path, body, fault, handler.headers.get("Authorization")))
        if fault == "drop":
            handler.close_connection = True  # no status line, no body: the client sees the connection end
            return
        if fault == "slow":
            time.sleep(self.slow_seconds)
        if fault in ("429", "500", "503", "400", "401"):
            headers = {"Retry-After": self.retry_after} if fault == "429" else {}
            # the request's credentials echoed back, as careless servers do: the client must not repeat them
            message = f"injected {fault} for {handler.headers.get('Authorization')}"
            self._reply(handler, int(fault), json.dumps({"error": {"message": message}}).encode(), headers)
            return
        status, data = self._forward(handler.path, body) if self.upstream else (200, self._fake(body))
        self._reply(handler, status, data)

    def _forward(self, path: str, body: dict) -> tuple[int, bytes]:
        url = urlsplit(self.upstream)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=300)
        try:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def _fake(self, body: dict) -> bytes:
        prompt = body["prompt"]
        h = int.from_bytes(hashlib.sha256(json.dumps([body.get("seed"), prompt]).encode()).digest()[:8], "big")
        words = [_WORDS[(h >> (4 * i)) % len(_WORDS)] for i in range(2 + h % 5)][: body.get("max_tokens", 16)]
        choice: dict = {"index": 0, "text": " ".join(words).capitalize() + "?", "finish_reason": "stop"}
        ids = prompt if isinstance(prompt, list) else []
        if self.logprobs and body.get("logprob_token_ids"):
            # a distribution that depends on the prompt, so that expected scores differ between rows
            lps = {f"token_id:{t}": -1.0 - ((t + len(ids)) % 7) / 3 for t in body["logprob_token_ids"]}
            choice["logprobs"] = {"tokens": [], "token_logprobs": [], "top_logprobs": [lps], "text_offset": []}
        if self.logprobs and body.get("prompt_logprobs") is not None:
            choice["prompt_logprobs"] = [None] + [{str(t): {"logprob": -0.5 - (t % 5) / 10}} for t in ids[1:]]
        n_prompt = len(ids) if ids else len(str(prompt).split())
        usage = {"prompt_tokens": n_prompt, "completion_tokens": len(words), "total_tokens": n_prompt + len(words)}
        return json.dumps(
            {"object": "text_completion", "model": body.get("model"), "choices": [choice], "usage": usage}
        ).encode()

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict | None = None) -> None:
        try:
            handler.send_response(status)
            for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout): nothing to answer
            handler.close_connection = True
