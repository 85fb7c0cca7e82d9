"""The ``openai`` embedder against a local OpenAI-compatible endpoint (loopback,
started here): batching, retries on 429/5xx, Retry-After, timeouts, a wrong dim,
and errors that name the endpoint but never the key."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest

from engram_contract.embed_http import EmbeddingFailed, HttpEmbedder, endpoint_of, shown
from engram_contract.embedders import HashNgramEmbedder, check_for_new_space, get_embedder
from engram_contract.settings import EmbedSettings
from tests.embed_server import EmbedEndpoint, Reply, serve

KEY = "sk-test-secret-0123456789"


@pytest.fixture
def endpoint() -> Iterator[EmbedEndpoint]:
    yield from serve(EmbedEndpoint(dim=16))


def embedder(endpoint: EmbedEndpoint, dim: int = 16, **settings: object) -> HttpEmbedder:
    config = EmbedSettings(url=endpoint.url, model="toy", api_key=KEY, **settings)  # type: ignore[arg-type]
    return HttpEmbedder(dim, config, backoff=0.01)


def test_texts_are_embedded_by_the_endpoint_in_batches_in_order(endpoint: EmbedEndpoint) -> None:
    emb = embedder(endpoint, max_batch=2)
    texts = ["the cat", "a dog", "the bird", "fish", "a horse"]
    vectors = emb.embed(texts)
    assert vectors.shape == (5, 16)
    # the endpoint's vectors (answered in reverse; the index orders them), unit length
    np.testing.assert_allclose(vectors, HashNgramEmbedder(16).embed(texts), atol=1e-6)
    assert [r["input"] for r in endpoint.requests] == [texts[0:2], texts[2:4], texts[4:5]]
    assert {r["model"] for r in endpoint.requests} == {"toy"}
    assert endpoint.auth == [f"Bearer {KEY}"] * 3


def test_a_1000_text_batch_is_one_request_when_the_endpoint_takes_it(
    endpoint: EmbedEndpoint,
) -> None:
    emb = embedder(endpoint, max_batch=1000)
    assert emb.embed([f"memory {i}" for i in range(1000)]).shape == (1000, 16)
    assert len(endpoint.requests) == 1


def test_429_then_ok_is_retried_after_the_endpoints_retry_after(endpoint: EmbedEndpoint) -> None:
    answers = iter([Reply(429, {"Retry-After": "0"}), Reply()])
    endpoint.script = lambda _: next(answers)
    assert embedder(endpoint).embed(["hello"]).shape == (1, 16)
    assert len(endpoint.requests) == 2


def test_500s_until_the_retries_run_out_are_a_503_naming_the_endpoint(
    endpoint: EmbedEndpoint,
) -> None:
    endpoint.script = lambda _: Reply(500)
    with pytest.raises(EmbeddingFailed) as info:
        embedder(endpoint, retries=2).embed(["hello"])
    exc = info.value
    assert exc.status == 503
    assert len(endpoint.requests) == 3  # the first attempt and 2 retries
    assert f"{endpoint.url}/v1/embeddings" in exc.detail
    assert "answered 500 (3 attempts): scripted failure" in exc.detail
    assert KEY not in str(exc) and KEY not in (exc.hint or "")


def test_a_429_that_lasts_is_a_503_with_the_endpoints_retry_after(
    endpoint: EmbedEndpoint,
) -> None:
    endpoint.script = lambda _: Reply(429, {"Retry-After": "0.01"})
    with pytest.raises(EmbeddingFailed) as info:
        embedder(endpoint, retries=1).embed(["hello"])
    assert info.value.status == 503
    assert info.value.retry_after == pytest.approx(0.01)


def test_a_wrong_dimension_is_a_502_saying_both_dims(endpoint: EmbedEndpoint) -> None:
    endpoint.script = lambda _: Reply(dim=8)
    with pytest.raises(EmbeddingFailed) as info:
        embedder(endpoint).embed(["hello"])
    assert info.value.status == 502
    assert "returned 8-d vectors, the space needs 16" in info.value.detail
    assert len(endpoint.requests) == 1  # not retried: it would answer the same


def test_a_slow_endpoint_past_the_timeout_is_a_503(endpoint: EmbedEndpoint) -> None:
    endpoint.script = lambda _: Reply(delay=1.0)
    with pytest.raises(EmbeddingFailed) as info:
        embedder(endpoint, timeout=0.2, retries=1).embed(["hello"])
    assert info.value.status == 503
    assert "did not answer within 0.2 s (2 attempts)" in info.value.detail


def test_a_refused_key_is_a_502_pointing_at_the_key_setting(endpoint: EmbedEndpoint) -> None:
    endpoint.script = lambda _: Reply(401)
    with pytest.raises(EmbeddingFailed) as info:
        embedder(endpoint).embed(["hello"])
    assert info.value.status == 502
    assert info.value.hint is not None and "ENGRAM_EMBED_API_KEY" in info.value.hint
    assert KEY not in str(info.value)
    assert len(endpoint.requests) == 1


def test_an_answer_that_is_not_embeddings_is_a_502(endpoint: EmbedEndpoint) -> None:
    endpoint.script = lambda _: Reply(body=b'{"data": "nope"}')
    with pytest.raises(EmbeddingFailed, match="not an embeddings list") as info:
        embedder(endpoint).embed(["hello"])
    assert info.value.status == 502


def test_an_unreachable_endpoint_is_a_503() -> None:
    config = EmbedSettings(url="http://user:pw@127.0.0.1:9", retries=1)
    with pytest.raises(EmbeddingFailed) as info:
        HttpEmbedder(16, config, backoff=0.01).embed(["hello"])
    assert info.value.status == 503
    assert "http://127.0.0.1:9/v1/embeddings could not be reached" in info.value.detail
    assert "pw" not in info.value.detail


def test_retries_back_off_exponentially(endpoint: EmbedEndpoint) -> None:
    counter = itertools.count()
    endpoint.script = lambda _: Reply(503) if next(counter) < 3 else Reply()
    assert embedder(endpoint, retries=3).embed(["x"]).shape == (1, 16)
    assert len(endpoint.requests) == 4


def test_urls_and_settings() -> None:
    assert endpoint_of("http://h:1") == "http://h:1/v1/embeddings"
    assert endpoint_of("http://h:1/v1/") == "http://h:1/v1/embeddings"
    assert shown("https://u:secret@api.example:8443/v1/embeddings?k=1") == (
        "https://api.example:8443/v1/embeddings"
    )


def test_openai_needs_a_url_to_create_a_space(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENGRAM_EMBED_URL", raising=False)
    assert get_embedder("openai", 16).dim == 16  # a worker may hold such a space
    with pytest.raises(ValueError, match="needs ENGRAM_EMBED_URL"):
        check_for_new_space("openai", 16)


def test_a_fixed_embed_dim_refuses_spaces_of_another(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGRAM_EMBED_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ENGRAM_EMBED_DIM", "768")
    assert check_for_new_space("openai", 768).dim == 768
    with pytest.raises(ValueError, match=r"produces 768-d vectors \(ENGRAM_EMBED_DIM\), space"):
        check_for_new_space("openai", 384)
    assert get_embedder("openai", 384).dim == 384  # an existing space still loads


def test_prefixes_tell_stored_texts_from_cues(endpoint: EmbedEndpoint) -> None:
    emb = embedder(endpoint, document_prefix="passage: ", query_prefix="query: ")
    emb.embed(["The user has a cat"])
    emb.embed_queries(["what pet?"])
    assert [r["input"] for r in endpoint.requests] == [
        ["passage: The user has a cat"],
        ["query: what pet?"],
    ]
