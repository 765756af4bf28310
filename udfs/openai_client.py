"""A resilient client for OpenAI-compatible HTTP endpoints (``vllm serve``, Databricks Model Serving, providers).

Pure standard library (``http.client``), no pyspark, no vllm: the ``openai`` engine (``udfs.openai_engine``) and a
server owned by the executor share it. One client holds one persistent connection per worker thread and sends
up to ``max_concurrency`` requests at once (``map``).

Failure rules (every request is a seeded, side-effect-free completion, so sending it again is safe):

- retried with exponential backoff and full jitter, ``Retry-After`` honoured: 408, 429, 5xx, timeouts and dropped
  or refused connections, up to ``max_retries`` times; after that the request has failed for good and its row
  says why (``endpoint_http:503``, ``endpoint_timeout``, ``endpoint_connection_error``);
- not retried: any other 4xx is about this one request (a prompt the server will not take): its row says so
  (``endpoint_http:400``), except 401, 403 and 404, which are about the endpoint (bad key, no such model or
  path) and fail the batch (``EndpointRejected``) at once;
- a batch fails (``EndpointUnavailable``, so that Spark retries the task later) when a request fails for good
  before any request of the batch has been answered: the endpoint is down, not the row, and thousands of error
  rows would only have to be redone. Once something answered, the endpoint works and a request that still fails
  is that row's error.

The API key is read from the environment variable that ``api_key_env`` names, when a request is sent; it goes
into the Authorization header only and never into a message, a log line or the config.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import os
import random
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence
from urllib.parse import urlsplit

from udfs.redact import redact_text

log = logging.getLogger(__name__)

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RETRIED_STATUS = {408, 429}  # and every 5xx
_ENDPOINT_STATUS = {401, 403, 404}  # wrong key, no access, no such model or route: every request would fail


@dataclass(frozen=True)
class EndpointConfig:
    """An OpenAI-compatible endpoint (``engine.endpoint``; used by ``engine.name: openai``)."""

    # The API root, with its version: http://127.0.0.1:8000/v1 (vllm serve), https://<workspace>/serving-endpoints
    base_url: str | None = None
    model: str | None = None  # the served model name; null: the model path (vllm serve's default name)
    # NAME of the environment variable holding the API key (never the key itself); null: no Authorization header
    api_key_env: str | None = None
    # A directory with the model's tokenizer files (chat template, prompt fitting, token ids); null: the model path
    tokenizer: str | None = None
    # token_ids: prompts go as token ids, exactly the ids the in-process engine sends (vLLM's server takes them);
    # text: as text, for endpoints that take no ids (the server then tokenises, adding its special tokens)
    prompt_format: Literal["token_ids", "text"] = "token_ids"
    max_concurrency: int = 16  # requests in flight per Spark task (the server batches them continuously)
    connect_timeout_seconds: float = 10.0  # to open a connection
    request_timeout_seconds: float = 600.0  # seconds without a byte of the answer before the try counts as timed out
    max_retries: int = 6  # tries after the first for a 408/429/5xx, a timeout or a dropped connection
    backoff_seconds: float = 0.5  # the first retry waits up to this (full jitter), doubling per retry ...
    max_backoff_seconds: float = 30.0  # ... up to this; a Retry-After header is honoured instead when given

    def __post_init__(self):
        if self.base_url is not None and urlsplit(self.base_url).scheme not in ("http", "https"):
            raise ValueError(
                f"endpoint.base_url must be an http:// or https:// URL, got {redact_text(self.base_url)!r}"
            )
        if self.api_key_env is not None and not _ENV_NAME.fullmatch(self.api_key_env):
            # a key pasted here would end up in the config and the runs table: refuse it without echoing it
            raise ValueError("endpoint.api_key_env must be the NAME of an environment variable (like OPENAI_API_KEY)")
        for name in ("max_concurrency", "max_retries"):
            if getattr(self, name) < (1 if name == "max_concurrency" else 0):
                raise ValueError(f"endpoint.{name} must be >= {1 if name == 'max_concurrency' else 0}")
        for name in ("connect_timeout_seconds", "request_timeout_seconds", "backoff_seconds", "max_backoff_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"endpoint.{name} must be > 0, got {getattr(self, name)}")


class RequestFailed(Exception):
    """A request that failed for good; ``reason`` is the row's reason code."""

    def __init__(self, reason: str, detail: str, transport: bool):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.transport = transport  # the endpoint did not answer (or answered 408/429/5xx), as opposed to a 4xx


class EndpointRejected(RuntimeError):
    """401, 403 or 404: the endpoint refuses every request (key, access, model name, path)."""


class EndpointUnavailable(RuntimeError):
    """Nothing in a batch was answered after the retries: the endpoint is down or overloaded."""


class OpenAIClient:
    def __init__(self, cfg: EndpointConfig, sleep: Callable[[float], None] = time.sleep):
        if cfg.base_url is None:
            raise ValueError("engine.endpoint.base_url: required with engine.name: openai")
        if cfg.api_key_env is not None and not os.environ.get(cfg.api_key_env):
            raise ValueError(f"engine.endpoint.api_key_env: environment variable {cfg.api_key_env} is not set")
        self.cfg = cfg
        url = urlsplit(cfg.base_url)
        self._https = url.scheme == "https"
        self._host = url.hostname or ""
        self._port = url.port
        self._root = url.path.rstrip("/")
        self.where = redact_text(f"{url.scheme}://{url.netloc}{self._root}")  # for messages: no user:password
        self._sleep = sleep
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(cfg.max_concurrency, thread_name_prefix="openai-client")
        self.retries = 0  # tries that were sent again (read by tests and benchmarks)

    def post(self, path: str, body: dict, stop: threading.Event | None = None) -> dict:
        """POST ``body`` as JSON to ``base_url + path``; the decoded answer, retried as the module says. Raises
        ``RequestFailed`` when it fails for good, ``EndpointRejected`` on 401/403/404."""
        payload = json.dumps(body).encode("utf-8")
        tries = 0
        while True:
            try:
                status, headers, data = self._send("POST", self._root + path, payload)
            except (TimeoutError, socket.timeout) as exc:
                failure = RequestFailed("endpoint_timeout", f"{self.where}{path}: no answer ({exc})", True)
                wait = None
            except (OSError, http.client.HTTPException) as exc:  # refused, reset, closed mid-answer, bad framing
                failure = RequestFailed(
                    "endpoint_connection_error", f"{self.where}{path}: {type(exc).__name__}: {exc}", True
                )
                wait = None
            else:
                if status == 200:
                    try:
                        return json.loads(data)
                    except ValueError:
                        failure = RequestFailed(
                            "endpoint_bad_response", f"{self.where}{path}: answer is not JSON", True
                        )
                        wait = None
                else:
                    detail = f"{self.where}{path}: HTTP {status}: {redact_text(data[:300].decode('utf-8', 'replace'))}"
                    if status in _ENDPOINT_STATUS:
                        raise EndpointRejected(detail)
                    failure = RequestFailed(
                        f"endpoint_http:{status}", detail, status in _RETRIED_STATUS or status >= 500
                    )
                    if not failure.transport:
                        raise failure
                    wait = retry_after(headers.get("Retry-After"))
            if tries >= self.cfg.max_retries or (stop is not None and stop.is_set()):
                raise failure
            tries += 1
            self.retries += 1
            if wait is None:
                cap = min(self.cfg.max_backoff_seconds, self.cfg.backoff_seconds * 2 ** (tries - 1))
                wait = random.uniform(0, cap)
            log.debug("retrying %s in %.2f s (retry %d of %d): %s", path, wait, tries, self.cfg.max_retries, failure)
            self._sleep(wait)

    def map(self, path: str, bodies: Sequence[dict]) -> list[dict | RequestFailed]:
        """``post`` of each body, up to ``max_concurrency`` at once; answers in order, a ``RequestFailed`` where a
        request failed for good. Raises ``EndpointUnavailable`` when one failed for good on the transport before
        any was answered (the batch rule above), ``EndpointRejected`` on 401/403/404."""
        answered = threading.Event()
        down = threading.Event()
        fatal: list[BaseException] = []

        def one(body: dict) -> dict | RequestFailed | None:
            if down.is_set():
                return None  # the batch fails anyway: do not wait out another request's retries
            try:
                answer = self.post(path, body, stop=down)
            except RequestFailed as failure:
                if failure.transport and not answered.is_set():
                    down.set()
                    fatal.append(EndpointUnavailable(f"no request of this batch was answered: {failure}"))
                return failure
            except EndpointRejected as exc:
                down.set()
                fatal.append(exc)
                return None
            answered.set()
            return answer

        retries = self.retries
        results = list(self._pool.map(one, bodies))
        if fatal:
            raise fatal[0]
        failed = sum(isinstance(r, RequestFailed) for r in results)
        if failed or self.retries > retries:
            log.info(
                "%s%s: %d requests, %d retries, %d failed for good",
                self.where,
                path,
                len(bodies),
                self.retries - retries,
                failed,
            )
        return results  # type: ignore[return-value]

    def healthy(self) -> bool:
        """Whether the server answers ``GET /health`` (vLLM's) with 200; the host part of ``base_url`` is used."""
        try:
            return self._send("GET", "/health", None)[0] == 200
        except (OSError, http.client.HTTPException):
            return False

    def _send(self, method: str, path: str, payload: bytes | None) -> tuple[int, Any, bytes]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self.cfg.connect_timeout_seconds)
            conn.connect()
            conn.sock.settimeout(self.cfg.request_timeout_seconds)
            self._local.conn = conn
        headers = {"Content-Type": "application/json"}
        if self.cfg.api_key_env is not None:
            headers["Authorization"] = f"Bearer {os.environ.get(self.cfg.api_key_env, '')}"
        try:
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except BaseException:
            conn.close()  # a half-read answer leaves the connection unusable: the next try opens a new one
            self._local.conn = None
            raise
        if response.will_close:
            conn.close()
            self._local.conn = None
        return response.status, response.headers, data

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
