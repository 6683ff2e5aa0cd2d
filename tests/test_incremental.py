"""Incremental upserts and deletes against a full build with the same fitted vectorisers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from models.config import ModelConfig
from models.incremental import matrix
from models.incremental.fitted import build_with_fitted
from models.incremental.index import IncrementalIndex
from models.model import RelatedModel
from models.records import Article, read_articles
from tests.paths import SAMPLE_ARTICLES
from tests.test_model import random_articles

N, M = 300, 40
CONFIGS = {
    "plain": ModelConfig(k=10, rerank=False),
    "rerank": ModelConfig(k=10, rerank_components=20, rerank_pool=30),
    "min-score": ModelConfig(k=10, rerank=False, min_score=0.05, alpha=0.6),
}


@pytest.fixture(scope="module")
def sample() -> list[Article]:
    return read_articles([SAMPLE_ARTICLES]).articles


@pytest.fixture(scope="module", params=list(CONFIGS))
def fitted(request: pytest.FixtureRequest, sample: list[Article]) -> RelatedModel:
    return RelatedModel(config=CONFIGS[request.param]).fit(sample[:N])


@pytest.fixture
def small_merges(monkeypatch: pytest.MonkeyPatch) -> None:
    """Merge the delta and purge dead base rows after a handful of changes."""
    monkeypatch.setattr(matrix, "MERGE_MIN_ROWS", 4)
    monkeypatch.setattr(matrix, "MERGE_FRACTION", 0.01)
    monkeypatch.setattr(matrix, "MAX_DEAD_IN_BASE", 2)


def assert_matches_full_build(index: IncrementalIndex, current: dict[str, Article]) -> None:
    """Every list equals a full build over the live articles in the index's row order."""
    ids, neighbours, scores = index.snapshot()
    assert sorted(ids) == sorted(current)
    want_ids, want_neighbours, want_scores = build_with_fitted(
        index.model, [current[i] for i in ids]
    )
    assert ids == want_ids
    np.testing.assert_array_equal(neighbours, want_neighbours)
    np.testing.assert_array_equal(np.isnan(scores), np.isnan(want_scores))
    np.testing.assert_allclose(
        np.nan_to_num(scores, nan=0.0), np.nan_to_num(want_scores, nan=0.0), atol=1e-6, rtol=0
    )


def with_unknowns(article: Article, i: int) -> Article:
    """The article with words and tags no model has seen (and, for some, glued tags)."""
    return dataclasses.replace(
        article,
        title=f"{article.title} zorblaxian{i} quuxification",
        body=f"{article.body} flibbertigibbet{i} snorkelwhistle",
        tags=(*article.tags, f"never-seen-tag-{i}", "Unheard Of Org"),
    )


def test_fresh_index_equals_the_model(fitted: RelatedModel, sample: list[Article]) -> None:
    index = IncrementalIndex.from_model(fitted)
    assert len(index) == N
    np.testing.assert_array_equal(index.snapshot()[1], fitted.neighbours_)
    np.testing.assert_allclose(index.snapshot()[2], fitted.scores_, atol=1e-6)
    assert_matches_full_build(index, {a.id: a for a in sample[:N]})


def test_upserts_one_by_one_match_a_full_build(fitted: RelatedModel, sample: list[Article]) -> None:
    index = IncrementalIndex.from_model(fitted)
    current = {a.id: a for a in sample[:N]}
    for i, article in enumerate(sample[N : N + M]):
        if i % 5 == 0:
            article = with_unknowns(article, i)
        before = index.lists()
        changed = index.upsert(article)
        current[article.id] = article
        after = index.lists()
        assert changed == {a for a in after if after[a] != before.get(a)} | {article.id}
        if i % 8 == 0:
            assert_matches_full_build(index, current)
    assert len(index) == N + M
    assert_matches_full_build(index, current)


def test_unknown_words_and_tags_carry_no_weight(
    fitted: RelatedModel, sample: list[Article]
) -> None:
    index = IncrementalIndex.from_model(fitted)
    article = sample[N + 3]
    plain, noisy = index.vectorize(article), index.vectorize(with_unknowns(article, 0))
    assert plain.shape == noisy.shape == (1, fitted.blended_matrix().shape[1])
    assert (plain != noisy).nnz == 0


def test_edit_replaces_the_old_version_everywhere(
    fitted: RelatedModel, sample: list[Article], small_merges: None
) -> None:
    index = IncrementalIndex.from_model(fitted)
    current = {a.id: a for a in sample[:N]}
    # The most-listed article: its edit touches many lists.
    counts = np.bincount(fitted.neighbours_[fitted.neighbours_ >= 0], minlength=N)
    target = sample[int(counts.argmax())]
    rewritten = dataclasses.replace(target, title="cocoa harvest", body=sample[0].body, tags=())
    before = index.lists()
    changed = index.upsert(rewritten)
    current[target.id] = rewritten
    after = index.lists()
    assert changed == {a for a in after if after[a] != before[a]} | {target.id}
    assert index.ids[-1] == target.id  # an edit moves the article to the end of the tie order
    assert len(index) == N
    assert_matches_full_build(index, current)
    for i, article in enumerate(sample[N : N + 10]):
        index.upsert(article)
        current[article.id] = article
        edited = dataclasses.replace(sample[i * 7], body=sample[N + 20 + i].body)
        index.upsert(edited)
        current[edited.id] = edited
    assert_matches_full_build(index, current)


@pytest.mark.parametrize("spare", [None, 0])
def test_delete_removes_the_article_from_every_list(
    fitted: RelatedModel, sample: list[Article], spare: int | None
) -> None:
    # spare=0: every holder of a deleted article is refilled by recomputation.
    index = IncrementalIndex.from_model(fitted, spare=spare)
    current = {a.id: a for a in sample[:N]}
    k = fitted.cfg.k
    counts = np.bincount(fitted.neighbours_[fitted.neighbours_ >= 0], minlength=N)
    for row in np.argsort(-counts, kind="stable")[:5].tolist():
        gone = sample[row].id
        before = index.lists()
        holders = {a for a, items in before.items() if gone in {i for i, _ in items}}
        assert holders
        changed = index.delete(gone)
        del current[gone]
        after = index.lists()
        assert gone not in after and gone not in index
        assert all(gone not in {i for i, _ in items} for items in after.values())
        assert changed == {a for a in after if after[a] != before[a]}
        assert holders <= changed
        assert_matches_full_build(index, current)
        # Lists that held it are refilled: full again wherever they were full.
        assert all(len(after[a]) == k for a in holders if len(before[a]) == k)
    with pytest.raises(KeyError, match="gone-already"):
        index.delete("gone-already")
    with pytest.raises(KeyError, match=sample[0].id if sample[0].id not in current else "zz"):
        index.neighbours(sample[0].id if sample[0].id not in current else "zz")


def test_delete_then_reupsert(fitted: RelatedModel, sample: list[Article]) -> None:
    index = IncrementalIndex.from_model(fitted)
    current = {a.id: a for a in sample[:N]}
    for row in (0, 17, 150, 299):
        article = sample[row]
        index.delete(article.id)
        del current[article.id]
        assert_matches_full_build(index, current)
        index.upsert(article)
        current[article.id] = article
        assert index.ids[-1] == article.id
        assert_matches_full_build(index, current)


def test_article_without_known_words_or_tags_is_isolated(
    fitted: RelatedModel, sample: list[Article]
) -> None:
    index = IncrementalIndex.from_model(fitted)
    current = {a.id: a for a in sample[:N]}
    stranger = Article(id="stranger", title="Qwxzy blorptastic", body="zzyzx vrrmph glorbulent")
    assert index.vectorize(stranger).nnz == 0
    assert index.upsert(stranger) == {"stranger"}
    current["stranger"] = stranger
    assert index.neighbours("stranger") == []
    assert all("stranger" not in {i for i, _ in items} for items in index.lists().values())
    assert_matches_full_build(index, current)
    # Known tag only: related through tags, however unknown its words.
    tagged = dataclasses.replace(stranger, id="tagged", tags=sample[0].tags)
    index.upsert(tagged)
    current["tagged"] = tagged
    assert index.neighbours("tagged")
    assert_matches_full_build(index, current)
    index.delete("stranger")
    del current["stranger"]
    assert_matches_full_build(index, current)


@pytest.mark.parametrize(("rerank", "spare"), [(False, None), (True, None), (False, 0), (True, 2)])
def test_random_operations_with_ties_and_merges(
    rerank: bool, spare: int | None, small_merges: None
) -> None:
    # 36 words and a handful of tags: many exactly tied scores, also at the pool's cut-off.
    articles = random_articles(21, 160)
    config = ModelConfig(
        k=5, text_min_df=1, rerank=rerank, rerank_pool=12, rerank_components=6, min_score=0.0
    )
    model = RelatedModel(config=config).fit(articles[:60])
    index = IncrementalIndex.from_model(model, spare=spare)
    current = {a.id: a for a in articles[:60]}
    rng = np.random.default_rng(5)
    fresh = iter(articles[60:])
    for step in range(120):
        op = rng.choice(["insert", "edit", "delete"], p=[0.5, 0.25, 0.25])
        live = sorted(current)
        if op == "insert" or len(live) < 3:
            article = next(fresh)
            index.upsert(article)
            current[article.id] = article
        elif op == "edit":
            old = current[live[int(rng.integers(len(live)))]]
            donor = articles[int(rng.integers(len(articles)))]
            edited = dataclasses.replace(old, body=donor.body, tags=donor.tags)
            index.upsert(edited)
            current[old.id] = edited
        else:
            gone = live[int(rng.integers(len(live)))]
            index.delete(gone)
            del current[gone]
        if step % 10 == 0 or step > 110:
            assert_matches_full_build(index, current)
    assert len(index) == len(current)


def test_capacity_grows_past_the_initial_allocation(small_merges: None) -> None:
    articles = random_articles(3, 40)
    model = RelatedModel(config=ModelConfig(k=3, text_min_df=1, rerank=False)).fit(articles[:2])
    index = IncrementalIndex.from_model(model)
    current = {a.id: a for a in articles[:2]}
    for article in articles[2:]:
        index.upsert(article)
        current[article.id] = article
    assert_matches_full_build(index, current)
