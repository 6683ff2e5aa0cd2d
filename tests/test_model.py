"""The blended model against a dense oracle, re-ranking, tags-only/text-only corpora."""

from __future__ import annotations

import numpy as np
import pytest

from models.config import ModelConfig
from models.model import RelatedModel
from models.records import Article
from models.rerank import RERANK_BLOCK_ROWS, rerank
from tests.oracle import dense_top_k

WORDS = [f"w{chr(97 + i)}{chr(97 + j)}" for i in range(6) for j in range(6)]
TAGS = ["Kyiv", "NATO", "élection", "Sheet", "oil", "Crimea", "Poland", "bank"]


def random_articles(seed: int, n: int) -> list[Article]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        title = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 4))))
        body = " ".join(rng.choice(WORDS, size=int(rng.integers(0, 25))))
        tags = tuple(rng.choice(TAGS, size=int(rng.integers(0, 4)), replace=False))
        out.append(Article(id=f"a{i}", title=title, body=body, tags=tags))
    return out


def blended_oracle(model: RelatedModel, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense text and tag cosines, blended by hand, then a plain sort."""
    alpha = model.cfg.alpha
    text = model.text_matrix_.toarray()
    tags = model.tag_matrix_.toarray()
    # a * T T' + (1 - a) * G G' == [sqrt(a) T, sqrt(1 - a) G] [..]': feed the oracle that.
    return dense_top_k(np.hstack([np.sqrt(alpha) * text, np.sqrt(1 - alpha) * tags]), k)


@pytest.mark.parametrize(("seed", "alpha"), [(0, 0.8), (1, 0.5), (2, 1.0), (3, 0.0), (4, 0.3)])
def test_exact_blend_matches_dense_oracle(seed: int, alpha: float) -> None:
    articles = random_articles(seed, 70)
    config = ModelConfig(k=7, alpha=alpha, rerank=False, text_min_df=1)
    model = RelatedModel(config=config).fit(articles)
    want_ids, want_scores = blended_oracle(model, 7)
    np.testing.assert_allclose(
        np.nan_to_num(model.scores_, nan=-1), np.nan_to_num(want_scores, nan=-1), atol=1e-6
    )
    # Ties (duplicates are likely with 36 words) are broken by the lower row on both sides.
    agree = np.isclose(np.nan_to_num(model.scores_, nan=-1), np.nan_to_num(want_scores, nan=-1))
    assert agree.all()
    distinct = np.ones_like(agree)
    distinct[:, 1:] = ~np.isclose(want_scores[:, 1:], want_scores[:, :-1], atol=1e-9)
    distinct[:, :-1] &= ~np.isclose(want_scores[:, :-1], want_scores[:, 1:], atol=1e-9)
    np.testing.assert_array_equal(model.neighbours_[distinct], want_ids[distinct])


def test_similarity_parts_match_blend_and_are_symmetric() -> None:
    articles = random_articles(5, 40)
    model = RelatedModel(config=ModelConfig(k=5, alpha=0.7, rerank=False, text_min_df=1))
    model.fit(articles)
    text = (model.text_matrix_ @ model.text_matrix_.T).toarray()
    tags = (model.tag_matrix_ @ model.tag_matrix_.T).toarray()
    for a, b in [(0, 1), (3, 17), (5, 39)]:
        pair = model.similarity(f"a{a}", f"a{b}")
        assert pair.text == pytest.approx(text[a, b], abs=1e-9)
        assert pair.tags == pytest.approx(tags[a, b], abs=1e-9)
        assert pair.blended == pytest.approx(0.7 * text[a, b] + 0.3 * tags[a, b], abs=1e-9)
        assert model.similarity(f"a{b}", f"a{a}") == pair
    for row in range(40):
        for col, score in zip(model.neighbours_[row], model.scores_[row], strict=True):
            if col >= 0:
                assert model.similarity(f"a{row}", f"a{col}").blended == pytest.approx(
                    float(score), abs=1e-6
                )


def test_rerank_reorders_the_exact_pool_by_its_formula() -> None:
    articles = random_articles(9, 120)
    config = ModelConfig(
        k=5, alpha=0.8, text_min_df=1, rerank_pool=20, rerank_components=8, rerank_weight=0.6
    )
    model = RelatedModel(config=config).fit(articles)
    assert model.rerank_active_ and model.latent_ is not None
    pool_ids, pool_scores = blended_oracle(model, 20)
    latent = model.latent_.astype(np.float64)
    for row in range(0, 120, 7):
        valid = pool_ids[row] >= 0
        cand, blended = pool_ids[row][valid], pool_scores[row][valid]
        first = 0.4 * blended + 0.6 * latent[cand] @ latent[row]
        best = cand[np.lexsort((cand, -first))[:3]]
        query = latent[row] + latent[best].mean(axis=0)
        query /= np.linalg.norm(query)
        final = 0.4 * blended + 0.6 * latent[cand] @ query
        order = np.lexsort((cand, -final))[:5]
        np.testing.assert_array_equal(model.neighbours_[row][: order.size], cand[order])
        np.testing.assert_allclose(model.scores_[row][: order.size], final[order], atol=1e-5)
        assert row not in model.neighbours_[row]


def test_rerank_function_pads_and_respects_min_score() -> None:
    latent = np.eye(4, dtype=np.float32)
    pool_ids = np.array([[1, 2, -1], [0, -1, -1], [0, 1, 3], [-1, -1, -1]], dtype=np.int32)
    pool_scores = np.array(
        [[0.9, 0.5, np.nan], [0.9, np.nan, np.nan], [0.2, 0.1, 0.05], [np.nan] * 3]
    )
    ids, scores = rerank(
        pool_ids,
        pool_scores,
        latent,
        k=2,
        weight=0.5,
        feedback=0,
        feedback_weight=0.0,
        min_score=0.05,
    )
    # Orthogonal latent vectors: the final score is half the blended one.
    np.testing.assert_array_equal(ids, [[1, 2], [0, -1], [0, 1], [-1, -1]])
    np.testing.assert_allclose(scores[0], [0.45, 0.25], atol=1e-6)
    assert np.isnan(scores[1, 1]) and np.isnan(scores[3]).all()


def test_rerank_threads_give_the_same_bits_and_count_every_row() -> None:
    rng = np.random.default_rng(5)
    n, pool, comps = 3 * RERANK_BLOCK_ROWS + 17, 12, 6  # several chunks, the last one short
    latent = rng.standard_normal((n, comps)).astype(np.float32)
    latent /= np.linalg.norm(latent, axis=1, keepdims=True)
    pool_ids = rng.integers(0, n, size=(n, pool)).astype(np.int32)
    pool_ids[::7, -3:] = -1  # padded pools
    pool_scores = np.where(pool_ids >= 0, rng.random((n, pool)), np.nan)
    runs = []
    for threads in (1, 2, 3):
        seen: list[int] = []
        runs.append(
            rerank(
                pool_ids,
                pool_scores,
                latent,
                k=5,
                weight=0.4,
                feedback=3,
                feedback_weight=0.5,
                progress=seen.append,
                threads=threads,
            )
        )
        assert sum(seen) == n
    for ids, scores in runs[1:]:
        np.testing.assert_array_equal(ids, runs[0][0])
        assert scores.tobytes() == runs[0][1].tobytes()


def test_text_only_corpus_trains_and_uses_text() -> None:
    articles = [
        Article(id=f"t{i}", title=a.title, body=a.body)
        for i, a in enumerate(random_articles(11, 30))
    ]
    model = RelatedModel(config=ModelConfig(k=3, rerank=False, text_min_df=1)).fit(articles)
    assert model.tag_matrix_.nnz == 0
    assert model.coverage(1) > 0.9


def test_title_only_corpus_trains() -> None:
    articles = [
        Article(id=f"h{i}", title=a.title, tags=a.tags)
        for i, a in enumerate(random_articles(12, 30))
    ]
    model = RelatedModel(config=ModelConfig(k=3, text_min_df=1)).fit(articles)
    assert (model.neighbours_[:, 0] >= 0).mean() > 0.9


def test_site_wide_tag_adds_nothing() -> None:
    # "sheet" sits on every article: two articles that share only it must score 0 on tags.
    articles = [
        Article(id="x1", title="crimea annexed", tags=("Sheet",)),
        Article(id="x2", title="football results", tags=("sheet",)),
        Article(id="x3", title="kyiv talks", tags=("sheet", "Kyiv")),
        Article(id="x4", title="kyiv siege", tags=("SHEET", "kyiv")),
    ]
    config = ModelConfig(k=2, rerank=False, text_min_df=1, tag_smoothing=0.0)
    model = RelatedModel(config=config).fit(articles)
    assert model.similarity("x1", "x2").tags == 0.0
    assert model.similarity("x3", "x4").tags == pytest.approx(1.0)
    assert model.shared_tags("x3", "x4") == ["kyiv"]
    # With the default smoothing the site tag still adds nothing; the shared rare tag counts.
    smoothed = RelatedModel(config=config.replace(tag_smoothing=3.0)).fit(articles)
    assert smoothed.similarity("x1", "x2").tags == 0.0
    assert 0.0 < smoothed.similarity("x3", "x4").tags < 1.0


def test_default_drops_single_article_tags_and_weights_titles() -> None:
    # docs/evaluation.md: a tag on one article matches nothing and only dilutes shared tags.
    articles = [
        Article(id="s1", title="quota talks", body="coffee", tags=("ICO", "Jorio Dauster")),
        Article(id="s2", title="quota deal", body="coffee", tags=("ICO",)),
        Article(id="s3", title="harvest", body="cocoa quota", tags=("ICCO",)),
    ]
    config = ModelConfig(k=2, rerank=False, text_min_df=1, text_max_df=1.0, tag_smoothing=0.0)
    assert config.tag_min_df == 2 and config.title_weight == 2.0
    model = RelatedModel(config=config).fit(articles)
    assert model.tags_.terms_ == ["ico"]
    assert model.similarity("s1", "s2").tags == pytest.approx(1.0)
    kept = RelatedModel(config=config.replace(tag_min_df=1)).fit(articles)
    assert kept.similarity("s1", "s2").tags < 1.0

    # A title word counts as two body words: s1's title words outweigh its body word "coffee".
    def title_share(m: RelatedModel) -> float:
        row, terms = m.text_matrix_[0].toarray()[0], m.text_.terms_
        return float(row[terms.index("quota")] / row[terms.index("coffee")])

    flat = RelatedModel(config=config.replace(title_weight=1.0)).fit(articles)
    assert title_share(model) > title_share(flat)


def test_fit_rejects_tiny_or_duplicate_corpus() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        RelatedModel().fit([Article(id="a", title="x")])
    with pytest.raises(ValueError, match="unique"):
        RelatedModel().fit([Article(id="a", title="x"), Article(id="a", title="y")])


def test_unknown_id_is_named() -> None:
    model = RelatedModel(config=ModelConfig(k=2, text_min_df=1, rerank=False))
    model.fit(random_articles(1, 5))
    with pytest.raises(KeyError, match="nope"):
        model.neighbours("nope")
