"""The text vectoriser: one tokenisation gives scikit-learn's vocabulary and counts."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer

from models.config import ModelConfig
from models.records import read_articles
from models.text import TextVectorizer
from tests.paths import SAMPLE_ARTICLES


def joined_reference(
    settings: dict[str, object], titles: list[str], bodies: list[str]
) -> tuple[dict[str, int], sp.csr_matrix]:
    """Vocabulary and TF-IDF rows the way scikit-learn builds them over title + body."""
    reference = TextVectorizer(**settings)  # type: ignore[arg-type]
    counts = reference._fit_joined(titles, bodies)
    tfidf = TfidfTransformer(sublinear_tf=reference.sublinear_tf, norm="l2").fit_transform(counts)
    return reference.vocabulary_, sp.csr_matrix(tfidf)


@pytest.fixture(scope="module")
def sample() -> tuple[list[str], list[str]]:
    articles = read_articles([SAMPLE_ARTICLES]).articles
    return [a.title for a in articles], [a.body for a in articles]


@pytest.mark.parametrize(
    "settings",
    [
        {"title_weight": 2.0},
        {"title_weight": 1.0, "min_df": 0.002, "max_df": 0.3},
        {"min_df": 1, "max_df": 1.0, "stop_words": None},
        {"min_df": 5, "max_df": 40, "sublinear_tf": False, "strip_accents": None},
    ],
)
def test_one_pass_fit_equals_scikit_learn_over_joined_text(
    sample: tuple[list[str], list[str]], settings: dict[str, object]
) -> None:
    titles, bodies = sample
    vectorizer = TextVectorizer(**settings)  # type: ignore[arg-type]
    matrix = vectorizer.fit_transform(titles, bodies)
    want_vocabulary, want_matrix = joined_reference(settings, titles, bodies)
    assert vectorizer.vocabulary_ == want_vocabulary
    assert len(want_vocabulary) > 100
    # The same numbers, not merely close: the same counts go through the same transformer.
    assert (matrix != want_matrix).nnz == 0
    # And the fitted state vectorises new text like the fit did.
    np.testing.assert_array_equal(
        vectorizer.transform(titles[:20], bodies[:20]).toarray(), matrix[:20].toarray()
    )


def test_pruning_that_scikit_learn_rejects_keeps_every_term() -> None:
    # Two articles cannot satisfy min_df 5: scikit-learn raises; the fit keeps every word.
    titles, bodies = ["Cocoa talks", "Coffee quotas"], ["Ghana cocoa crop", "Brazil coffee"]
    vectorizer = TextVectorizer(min_df=5)
    matrix = vectorizer.fit_transform(titles, bodies)
    words = {"cocoa", "talks", "coffee", "quotas", "ghana", "crop", "brazil"}
    assert set(vectorizer.vocabulary_) == words
    assert matrix.shape == (2, 7)
    with pytest.raises(ValueError):
        CountVectorizer(min_df=5).fit([f"{t}\n{b}" for t, b in zip(titles, bodies, strict=True)])


def test_only_stop_words_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no usable words"):
        TextVectorizer().fit_transform(["The and of"], ["it is a"])


def test_numpy_integers_are_document_counts(sample: tuple[list[str], list[str]]) -> None:
    # scikit-learn reads any Integral as a document count; so must the one-pass fit.
    titles, bodies = sample
    plain = TextVectorizer(min_df=5, max_df=40)
    plain.fit_transform(titles, bodies)
    numpy_ints = TextVectorizer(min_df=np.int64(5), max_df=np.int32(40))  # type: ignore[arg-type]
    numpy_ints.fit_transform(titles, bodies)
    assert numpy_ints.vocabulary_ == plain.vocabulary_
    assert len(plain.vocabulary_) < 5000


@pytest.mark.parametrize(("name", "value"), [("min_df", 2.0), ("min_df", 0), ("max_df", 1.5)])
def test_invalid_pruning_settings_are_refused_by_name(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"'{name}' parameter"):
        TextVectorizer(**{name: value}).fit_transform(["Cocoa talks"], ["Ghana cocoa"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"text_min_df": 2.0}, "text_min_df must be an integer"),
        ({"tag_min_df": True}, "tag_min_df must be an integer"),
        ({"text_max_df": 0}, "text_max_df must be a number in"),
        ({"tag_max_df": "all"}, "tag_max_df must be a number in"),
    ],
)
def test_config_pruning_types(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelConfig.from_dict(settings)


def test_config_max_df_one_means_every_article() -> None:
    # JSON has no float 1.0 vs int 1 distinction a user would notice; scikit-learn would read
    # the int as "one document" and prune every word seen twice.
    config = ModelConfig.from_dict({"text_max_df": 1, "tag_max_df": 1})
    assert config.text_max_df == 1.0 and isinstance(config.text_max_df, float)
    assert config.tag_max_df == 1.0 and isinstance(config.tag_max_df, float)
