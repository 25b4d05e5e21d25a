"""The service's query path: dynamic padding gives the padded path's vectors, the query vector cache (hits, its
bound, never another model's vectors), and the thread settings reaching the threads that run the work."""
import threading

import faiss
import numpy as np
import pytest
import torch

from encoders.video_text import Embedder, VideoTextConfig, build_video_text_model, set_encoder_threads
from index import VectorIndex, search_threads, set_search_threads
from service.config import ServiceConfig
from service.query_cache import QueryVectorCache
from service.state import apply_threads

TEXTS = ["a dog", "A red square moves left, then grows bigger!", "person", "the " * 40 + "end",
         "a blue circle rotates slowly under the rain"]


def embedder(seed: int = 0, **kwargs) -> Embedder:
    torch.manual_seed(seed)
    model, tokenizer = build_video_text_model(VideoTextConfig(text_layers=2, fusion_layers=1, embed_dim=32,
                                                              mlm=False))
    return Embedder(model, tokenizer, **kwargs)


@pytest.fixture(scope="module")
def emb():
    return embedder()


class Counting:
    """An embedder that counts the texts it is asked to embed."""

    def __init__(self, inner: Embedder):
        self.inner, self.embedded = inner, []
        self.fingerprint, self.dim = inner.fingerprint, inner.dim

    def embed_texts(self, texts, dynamic_padding=False):
        self.embedded.extend(texts)
        return self.inner.embed_texts(texts, dynamic_padding)


def test_dynamic_padding_gives_the_padded_vectors(emb):
    short = emb._tokenize_longest(["a dog", "a cat runs"])[0]
    assert short.shape[1] < emb.max_text_tokens  # padded to the longest, not to 32
    assert emb._tokenize_longest(TEXTS)[0].shape[1] == emb.max_text_tokens  # the long one is still cut at 32
    for batch in (TEXTS, TEXTS[:1], [TEXTS[0], TEXTS[2]]):
        padded = emb.embed_texts(batch)
        dynamic = emb.embed_texts(batch, dynamic_padding=True)
        assert dynamic.shape == padded.shape == (len(batch), emb.dim)
        assert np.abs(dynamic - padded).max() < 1e-5


def test_cache_hits_return_the_same_vectors_and_are_counted(emb):
    counted, lookups = Counting(emb), []
    cache = QueryVectorCache(8, on_lookup=lambda hits, misses: lookups.append((hits, misses)))
    first = cache.embed(counted, TEXTS[:3], dynamic_padding=True)
    again = cache.embed(counted, [TEXTS[2], TEXTS[0], TEXTS[3]], dynamic_padding=True)
    assert counted.embedded == TEXTS[:3] + [TEXTS[3]]  # only the new text went through the encoder
    assert lookups == [(0, 3), (2, 1)]
    np.testing.assert_array_equal(again[:2], first[[2, 0]])
    np.testing.assert_allclose(again, emb.embed_texts([TEXTS[2], TEXTS[0], TEXTS[3]]), atol=1e-5)
    again[:] = 0  # a caller's copy: the cache keeps its own
    np.testing.assert_array_equal(cache.embed(counted, TEXTS[:1]), first[:1])


def test_cache_keeps_at_most_its_capacity_dropping_the_least_recent(emb):
    counted = Counting(emb)
    cache = QueryVectorCache(2)
    cache.embed(counted, ["a", "b"])
    cache.embed(counted, ["a"])  # "a" is now the most recent
    cache.embed(counted, ["c"])  # evicts "b"
    assert len(cache) == 2
    counted.embedded.clear()
    cache.embed(counted, ["a", "b", "c"])
    assert counted.embedded == ["b"]
    off = QueryVectorCache(0)
    off.embed(counted, ["a"])
    assert len(off) == 0


def test_cache_never_answers_for_another_model_or_text_length(emb):
    cache = QueryVectorCache(16)
    other = embedder(seed=1)
    shorter = embedder(max_text_tokens=4)
    mine = cache.embed(emb, TEXTS)
    theirs = cache.embed(other, TEXTS)
    cut = cache.embed(shorter, TEXTS)
    np.testing.assert_allclose(theirs, other.embed_texts(TEXTS), atol=1e-6)
    np.testing.assert_allclose(cut, shorter.embed_texts(TEXTS), atol=1e-6)
    assert np.abs(mine - theirs).max() > 0.1 and np.abs(mine[1] - cut[1]).max() > 1e-3
    assert len(cache) == 3 * len(TEXTS)


def in_new_thread(fn):
    out = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join()
    return out[0]


def test_thread_settings_reach_the_threads_that_search_and_encode():
    before = torch.get_num_threads(), faiss.cvar.distance_compute_blas_threshold
    try:
        apply_threads(ServiceConfig(encoder_threads=1, search_threads=1))
        assert in_new_thread(torch.get_num_threads) == 1
        assert in_new_thread(search_threads) == 1  # a worker thread, not only the one that set it
        assert faiss.cvar.distance_compute_blas_threshold == 20
        index = VectorIndex.build(8, ids=np.arange(40), vectors=np.eye(8)[np.arange(40) % 8])
        queries = np.eye(8)[np.arange(25) % 8]  # 25 queries at once: the BLAS path
        scores, ids = in_new_thread(lambda: index.search(queries, 1))
        assert (ids[:, 0] % 8 == np.arange(25) % 8).all() and np.allclose(scores[:, 0], 1)
        set_search_threads(0)
        assert faiss.cvar.distance_compute_blas_threshold == before[1]
        with pytest.raises(ValueError):
            set_encoder_threads(-1)
        with pytest.raises(ValueError, match="search_threads"):
            ServiceConfig(search_threads=-1)
    finally:
        torch.set_num_threads(before[0])
        set_search_threads(0)
