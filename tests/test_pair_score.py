"""The score of one pair equals the score its neighbour list stores, re-ranked or not."""

from __future__ import annotations

import numpy as np
import pytest

from models.config import ModelConfig
from models.model import RelatedModel
from models.pair_score import ListScorer
from tests.test_model import random_articles

CONFIGS = {
    "plain": ModelConfig(k=6, alpha=0.7, text_min_df=1, rerank=False),
    "re-ranked": ModelConfig(
        k=6, alpha=0.8, text_min_df=1, rerank_pool=20, rerank_components=8, rerank_weight=0.6
    ),
    "re-ranked, no feedback": ModelConfig(
        k=6, text_min_df=1, rerank_pool=15, rerank_components=6, rerank_feedback=0
    ),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def model(request: pytest.FixtureRequest) -> RelatedModel:
    return RelatedModel(config=CONFIGS[request.param]).fit(random_articles(9, 120))


def test_every_listed_pair_scores_its_stored_score_exactly(model: RelatedModel) -> None:
    scorer = ListScorer(model)
    listed = 0
    for article_id in model.ids_:
        for neighbour, stored in model.neighbours(article_id):
            assert scorer.score(article_id, neighbour).score == stored
            listed += 1
    assert listed > 300


def test_parts_make_the_score(model: RelatedModel) -> None:
    scorer = ListScorer(model)
    a = model.ids_[0]
    for b in model.ids_[1:40]:  # listed or not: the same formula
        got = scorer.score(a, b)
        pair = model.similarity(a, b)
        assert (got.text, got.tags) == (pair.text, pair.tags)
        assert got.blended == pytest.approx(pair.blended, abs=1e-12)
        if model.rerank_active_:
            assert got.latent is not None and got.rerank_weight == model.cfg.rerank_weight
            w = got.rerank_weight
            assert got.score == pytest.approx((1 - w) * got.blended + w * got.latent, abs=1e-6)
        else:
            assert got.latent is None and got.score == np.float32(got.blended)


def test_a_reranked_score_is_not_the_blended_one() -> None:
    model = RelatedModel(config=CONFIGS["re-ranked"]).fit(random_articles(9, 120))
    scorer = ListScorer(model)
    a = model.ids_[3]
    (b, stored), *_ = model.neighbours(a)
    got = scorer.score(a, b)
    assert got.score == stored and abs(got.score - got.blended) > 1e-4


def test_unknown_ids_raise_naming_them(model: RelatedModel) -> None:
    with pytest.raises(KeyError, match="nope"):
        ListScorer(model).score(model.ids_[0], "nope")
