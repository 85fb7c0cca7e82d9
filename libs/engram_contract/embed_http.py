"""``openai``: text embedded by an OpenAI-compatible ``POST /v1/embeddings``
endpoint (OpenAI, Ollama, vLLM, text-embeddings-inference, LM Studio), set by
``ENGRAM_EMBED_*`` (:class:`~engram_contract.settings.EmbedSettings`).

Texts go in requests of at most ``ENGRAM_EMBED_MAX_BATCH``, after
``ENGRAM_EMBED_DOCUMENT_PREFIX`` (stored texts) or ``ENGRAM_EMBED_QUERY_PREFIX``
(recall cues) for models trained with prefixes. A 429, a 5xx, a
timeout or a refused connection is tried again (``ENGRAM_EMBED_RETRIES`` times,
exponential backoff, or the endpoint's ``Retry-After``); then the call fails
with a 503 :class:`~engram_contract.errors.Unavailable` naming the endpoint (never
the key). An answer that cannot be used (another status, not the embeddings
asked for, vectors of another dim than the space's) is a 502. Callers embed
before they publish, so a memory that could not be embedded is not written.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np

from engram_contract.errors import Unavailable
from engram_contract.settings import EmbedSettings

log = logging.getLogger(__name__)

#: first backoff (doubling each attempt) and the most any wait is, in seconds
BACKOFF = 0.5
MAX_WAIT = 30.0


def endpoint_of(base_url: str) -> str:
    """The embeddings URL for a base URL (``…/v1/embeddings``)."""
    base = base_url.rstrip("/")
    return base + ("/embeddings" if base.endswith("/v1") else "/v1/embeddings")


def shown(url: str) -> str:
    """``url`` without credentials, to name in errors and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def retry_after(response: httpx.Response) -> float | None:
    """The ``Retry-After`` of a response in seconds (a number or an HTTP date)."""
    value = response.headers.get("retry-after")
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


class EmbeddingFailed(Unavailable):
    """The embedding endpoint failed (503: unreachable or overloaded, retry
    later) or answered what cannot be used (502)."""


class HttpEmbedder:
    """An OpenAI-compatible embeddings endpoint (see the module docstring)."""

    name = "openai"
    inline = False

    def __init__(self, dim: int, settings: EmbedSettings, *, backoff: float = BACKOFF) -> None:
        self.settings = settings
        # the space's dim: every answer is checked against it. A fixed
        # ENGRAM_EMBED_DIM refuses new spaces of another dim (setup_problem), not
        # existing ones: a worker still loads them
        self.dim = dim
        self.max_batch = settings.max_batch
        self.backoff = backoff
        self.url = endpoint_of(settings.url) if settings.url else None
        self.where = shown(self.url) if self.url else "(ENGRAM_EMBED_URL unset)"
        self._client: httpx.Client | None = None

    @classmethod
    def from_env(cls, dim: int) -> HttpEmbedder:
        return cls(dim, EmbedSettings())

    def setup_problem(self) -> str | None:
        """Why this process cannot embed with it (``None``: it can)."""
        if self.url is None:
            return "embedder 'openai' needs ENGRAM_EMBED_URL (an OpenAI-compatible endpoint)"
        fixed = self.settings.dim
        if fixed is not None and fixed != self.dim:
            return (
                f"embedder 'openai' produces {fixed}-d vectors (ENGRAM_EMBED_DIM), "
                f"space needs {self.dim}"
            )
        return None

    def client(self) -> httpx.Client:
        if self._client is None:
            headers = {}
            if self.settings.api_key is not None:
                headers["Authorization"] = f"Bearer {self.settings.api_key.get_secret_value()}"
            self._client = httpx.Client(headers=headers, timeout=self.settings.timeout)
        return self._client

    def _embed(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        if prefix:
            texts = [prefix + t for t in texts]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        step = self.max_batch
        for start in range(0, len(texts), step):
            out[start : start + step] = self._request(texts[start : start + step])
        return out

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts, self.settings.document_prefix)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts, self.settings.query_prefix)

    # -- one request ----------------------------------------------------------------

    def _unavailable(self, detail: str, retry: float | None = None) -> EmbeddingFailed:
        return EmbeddingFailed(
            503,
            "Embedding endpoint unavailable",
            f"the embedding endpoint {self.where} {detail}; nothing was written",
            hint="Retry later; check the endpoint (ENGRAM_EMBED_URL) is up.",
            retry_after=retry,
        )

    def _bad(self, detail: str, hint: str | None = None) -> EmbeddingFailed:
        return EmbeddingFailed(
            502,
            "Embedding endpoint failed",
            f"the embedding endpoint {self.where} {detail}; nothing was written",
            hint=hint or "Check ENGRAM_EMBED_URL and ENGRAM_EMBED_MODEL.",
        )

    def _request(self, texts: Sequence[str]) -> np.ndarray:
        problem = self.setup_problem()
        if problem is not None:
            raise EmbeddingFailed(503, "Embedder not configured", problem)
        assert self.url is not None
        body = {"model": self.settings.model, "input": list(texts), "encoding_format": "float"}
        attempts = self.settings.retries + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            wait = min(self.backoff * 2**attempt, MAX_WAIT)
            try:
                response = self.client().post(self.url, json=body)
            except httpx.TimeoutException:
                failure = self._unavailable(
                    f"did not answer within {self.settings.timeout:g} s "
                    f"({attempts} attempt{'s' if attempts > 1 else ''})"
                )
            except httpx.HTTPError as exc:
                failure = self._unavailable(
                    f"could not be reached ({type(exc).__name__}, {attempts} attempts)"
                )
            else:
                status = response.status_code
                if status == 200:
                    return self._vectors(response, len(texts))
                if status != 429 and status < 500:
                    raise self._bad(
                        f"answered {status}: {_error_text(response)}",
                        "Check ENGRAM_EMBED_API_KEY."
                        if status in (401, 403)
                        else "Check ENGRAM_EMBED_URL and ENGRAM_EMBED_MODEL.",
                    )
                after = retry_after(response)
                if after is not None:
                    wait = min(after, MAX_WAIT)
                failure = self._unavailable(
                    f"answered {status} ({attempts} attempts): {_error_text(response)}", after
                )
            if last:
                raise failure
            log.warning("embedding: %s; retrying in %.2f s", failure.detail, wait)
            time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _vectors(self, response: httpx.Response, n: int) -> np.ndarray:
        try:
            doc: Any = response.json()
            rows = sorted(doc["data"], key=lambda row: int(row.get("index", 0)))
            vectors = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise self._bad("answered something that is not an embeddings list") from None
        if vectors.ndim != 2 or vectors.shape[0] != n:
            raise self._bad(f"answered {len(vectors)} embeddings for {n} texts")
        if vectors.shape[1] != self.dim:
            raise self._bad(
                f"returned {vectors.shape[1]}-d vectors, the space needs {self.dim}",
                "Create the space with the model's dim (or set ENGRAM_EMBED_DIM to it), "
                "or use a model that returns this dim.",
            )
        if not np.isfinite(vectors).all():
            raise self._bad("returned values that are not finite float32")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        if (norms == 0).any():
            raise self._bad("returned a zero vector")
        out: np.ndarray = vectors / norms
        return out


def _error_text(response: httpx.Response, limit: int = 200) -> str:
    """What the endpoint said (its error message, cut short)."""
    try:
        doc = response.json()
        error = doc.get("error") if isinstance(doc, dict) else None
        text = error.get("message") if isinstance(error, dict) else error or doc
        text = str(text)
    except ValueError:
        text = response.text
    text = " ".join(text.split())
    return (text[:limit] + "…") if len(text) > limit else text or "(no body)"
