"""The built-in ``hash-ngram-v1`` embedder and the embedder registry."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engram_contract import embedders
from engram_contract.embedders import (
    HashNgramEmbedder,
    UnknownEmbedder,
    available_embedders,
    get_embedder,
)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_same_text_gives_identical_vector() -> None:
    emb = HashNgramEmbedder(64)
    text = "Alice prefers green tea in the morning"
    first = emb.embed_one(text)
    assert first.tobytes() == emb.embed_one(text).tobytes()
    assert first.tobytes() == emb.embed([text])[0].tobytes()


def test_two_instances_agree() -> None:
    text = "The deploy failed because the disk was full"
    a = HashNgramEmbedder(128).embed([text, "other"])
    b = HashNgramEmbedder(128).embed([text, "other"])
    assert a.tobytes() == b.tobytes()


def test_output_is_pinned_across_versions_and_processes() -> None:
    # hash-ngram-v1 vectors are stored in WALs and snapshots. If this output ever
    # changes, new text queries stop matching old memories: add a new embedder name
    # instead of changing this one. (CRC32 features, unlike ``hash()``, do not depend
    # on PYTHONHASHSEED, so a pinned value also pins cross-process behaviour.)
    expected = [
        0.1315845251083374,
        -0.5263381004333496,
        0.1315845251083374,
        0.7707093954086304,
        0.1315845251083374,
        0.0,
        0.24437126517295837,
        0.1315845251083374,
    ]
    np.testing.assert_allclose(HashNgramEmbedder(8).embed_one("hello world"), expected, atol=1e-6)


@pytest.mark.parametrize("dim", [2, 3, 8, 64, 384])
def test_dim_is_respected(dim: int) -> None:
    emb = HashNgramEmbedder(dim)
    assert emb.dim == dim
    out = emb.embed(["one", "two words", "three little words"])
    assert out.shape == (3, dim)
    assert out.dtype == np.float32


def test_embedding_no_texts_gives_an_empty_matrix() -> None:
    out = HashNgramEmbedder(16).embed([])
    assert out.shape == (0, 16)


@pytest.mark.parametrize("dim", [0, 1, -4])
def test_dim_below_two_is_refused(dim: int) -> None:
    with pytest.raises(ValueError, match="dim"):
        HashNgramEmbedder(dim)


@pytest.mark.parametrize(
    "text",
    [
        "hello",
        "The quick brown fox jumps over the lazy dog",
        "日本語のテキスト",
        "emoji 😀 inside",
        "x" * 10_000,
    ],
)
def test_vectors_have_unit_length(text: str) -> None:
    vec = HashNgramEmbedder(64).embed_one(text)
    assert float(np.linalg.norm(vec)) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("text", ["?!...", "!", "", "   ", "--", "😀"])
def test_text_without_words_still_gives_a_finite_unit_vector(text: str) -> None:
    vec = HashNgramEmbedder(16).embed_one(text)
    assert np.isfinite(vec).all()
    assert float(np.linalg.norm(vec)) == pytest.approx(1.0, abs=1e-5)


def test_different_punctuation_gives_different_vectors() -> None:
    emb = HashNgramEmbedder(64)
    assert emb.embed_one("?!?!").tobytes() != emb.embed_one("...;;").tobytes()


@pytest.mark.parametrize(
    ("anchor", "similar", "unrelated"),
    [
        (
            "the cat sat on the mat",
            "the cat sat on a mat",
            "quarterly revenue forecast spreadsheet",
        ),
        (
            "user prefers dark mode in the editor",
            "the user prefers dark mode",
            "flight to Lisbon departs at noon",
        ),
        (
            "kubernetes pod restarted after OOM kill",
            "pod OOM killed and restarted by kubernetes",
            "grandmother's apple pie recipe",
        ),
    ],
)
def test_similar_texts_are_closer_than_unrelated_ones(
    anchor: str, similar: str, unrelated: str
) -> None:
    emb = HashNgramEmbedder(256)
    a, s, u = emb.embed([anchor, similar, unrelated])
    assert cosine(a, s) > cosine(a, u) + 0.3


def test_case_does_not_matter() -> None:
    emb = HashNgramEmbedder(64)
    assert emb.embed_one("Green TEA").tobytes() == emb.embed_one("green tea").tobytes()


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200), dim=st.integers(min_value=2, max_value=64))
def test_any_text_gives_a_finite_unit_vector(text: str, dim: int) -> None:
    vec = HashNgramEmbedder(dim).embed_one(text)
    assert vec.shape == (dim,)
    assert np.isfinite(vec).all()
    assert float(np.linalg.norm(vec)) == pytest.approx(1.0, abs=1e-5)


# -- registry -------------------------------------------------------------------


def test_builtin_embedder_is_available() -> None:
    assert "hash-ngram-v1" in available_embedders()
    emb = get_embedder("hash-ngram-v1", 32)
    assert emb.name == "hash-ngram-v1"
    assert emb.dim == 32
    assert emb.embed(["x"]).shape == (1, 32)


def test_unknown_embedder_error_names_it_and_lists_the_available_ones() -> None:
    with pytest.raises(UnknownEmbedder) as info:
        get_embedder("sentence-bert", 384)
    message = str(info.value)
    assert "'sentence-bert'" in message
    assert "available: " in message
    for name in available_embedders():
        assert name in message


def test_unknown_embedder_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown embedder"):
        get_embedder("nope", 8)


def test_an_embedder_in_the_table_is_offered() -> None:
    table = {**embedders.EMBEDDERS, "toy-v1": HashNgramEmbedder}
    assert "toy-v1" in available_embedders(table)
    assert get_embedder("toy-v1", 8, table).dim == 8
    with pytest.raises(UnknownEmbedder, match="toy-v1"):
        get_embedder("missing", 8, table)


def test_the_embedder_table_is_read_only() -> None:
    assert available_embedders() == ["e5-small", "hash-ngram-v1", "openai"]
    with pytest.raises(TypeError):
        embedders.EMBEDDERS["toy-v1"] = HashNgramEmbedder  # type: ignore[index]


def test_embedder_of_the_wrong_dim_is_refused() -> None:
    table = {"fixed-384": lambda _dim: HashNgramEmbedder(384)}
    with pytest.raises(ValueError, match="produces 384-d vectors, space needs 16"):
        get_embedder("fixed-384", 16, table)


def test_a_default_embedder_that_cannot_make_the_default_dim_refuses_to_start() -> None:
    from engram_nats.spaces import SpaceAccess, SpacePolicy

    policy = SpacePolicy(default_dim=768, default_embedder="e5-small")
    with pytest.raises(
        ValueError, match="ENGRAM_DEFAULT_EMBEDDER=e5-small with ENGRAM_DEFAULT_DIM=768"
    ):
        SpaceAccess(None, policy)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown embedder 'e5-smal'"):
        SpaceAccess(None, SpacePolicy(default_embedder="e5-smal"))  # type: ignore[arg-type]
