"""A small OpenAI-compatible embeddings endpoint (``POST /v1/embeddings``) on
loopback, in a thread, for the ``openai`` embedder's tests: it answers with
hash-ngram vectors of the dim asked for, and a test scripts its failures
(statuses, Retry-After, delays, another dim)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from engram_contract.embedders import HashNgramEmbedder


@dataclass
class Reply:
    """What the endpoint does with one request (``status`` 200: embeddings)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    dim: int | None = None  # the dim answered (default: the endpoint's)
    body: bytes | None = None  # instead of the embeddings


@dataclass
class EmbedEndpoint:
    dim: int
    #: per request (its JSON body): how to answer; default: embeddings at once
    script: Callable[[dict[str, Any]], Reply] = lambda _: Reply()
    requests: list[dict[str, Any]] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)
    url: str = ""

    def reply(self, doc: dict[str, Any], auth: str | None) -> tuple[int, dict[str, str], bytes]:
        self.requests.append(doc)
        self.auth.append(auth)
        answer = self.script(doc)
        if answer.delay:
            time.sleep(answer.delay)
        if answer.body is not None or answer.status != 200:
            body = answer.body or json.dumps({"error": {"message": "scripted failure"}}).encode()
            return answer.status, answer.headers, body
        texts = doc["input"]
        vectors = HashNgramEmbedder(answer.dim or self.dim).embed(texts)
        data = [
            {"object": "embedding", "index": i, "embedding": v.tolist()}
            for i, v in enumerate(vectors)
        ]
        data.reverse()  # the index orders them, not the position
        out = {"object": "list", "data": data, "model": doc.get("model")}
        return 200, answer.headers, json.dumps(out).encode()


def serve(endpoint: EmbedEndpoint) -> Iterator[EmbedEndpoint]:
    """Run ``endpoint`` on a free loopback port until the generator is closed."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path != "/v1/embeddings":
                self.send_error(404)
                return
            length = int(self.headers.get("content-length") or 0)
            doc = json.loads(self.rfile.read(length))
            try:
                status, headers, body = endpoint.reply(doc, self.headers.get("authorization"))
            except (BrokenPipeError, ConnectionResetError):
                return
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    endpoint.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()
