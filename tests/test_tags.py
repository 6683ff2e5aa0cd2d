"""Tag normalisation, aliases, glued-tag splitting and IDF weighting."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from models.tagnorm import normalize_tag
from models.tags import TagVectorizer, load_aliases, split_glued

# The tag line of a real page (shared/seed-article.txt), scraped without separators.
SEED_TAG_LINE = (
    "andrzej dudadiplomacyEuropeJoe BidenKamala HarrisKievNATOPolandRussiasheetUkraine"
    "Vladimir PutinVolodymyr ZelenskyWar in Ukraine"
)


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("Kyiv", "kyiv"),
        ("  São   Paulo ", "sao paulo"),
        ("west-germany", "west germany"),
        ("WEST GERMANY", "west germany"),
        ("Zürich", "zurich"),
        ("U.S.", "u s"),
        ("War in Ukraine", "war in ukraine"),
        ("!!!", ""),
    ],
)
def test_normalize_tag(raw: str, want: str) -> None:
    assert normalize_tag(raw) == want


def test_aliases_file(tmp_path: Path) -> None:
    path = tmp_path / "aliases.txt"
    path.write_text("# old -> new\nKiev -> Kyiv\n\nU.S.A. -> usa  # country\n", encoding="utf-8")
    assert load_aliases(path) == {"kiev": "kyiv", "u s a": "usa"}
    vec = TagVectorizer(aliases=load_aliases(path)).fit([["Kiev"], ["kyiv", "x"], ["y"]])
    assert "kiev" not in vec.vocabulary_ and "kyiv" in vec.vocabulary_


def test_aliases_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("kiev -> kyiv\nnot an alias\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected 'old -> new'"):
        load_aliases(path)
    with pytest.raises(ValueError, match="no such file"):
        load_aliases(tmp_path / "missing.txt")


def test_split_glued_seed_article_tags() -> None:
    known = {
        normalize_tag(t)
        for t in [
            "Andrzej Duda",
            "diplomacy",
            "Europe",
            "Joe Biden",
            "Kamala Harris",
            "Kiev",
            "NATO",
            "Poland",
            "Russia",
            "sheet",
            "Ukraine",
            "Vladimir Putin",
            "Volodymyr Zelensky",
            "War in Ukraine",
        ]
    }
    assert split_glued(SEED_TAG_LINE, known) == [
        "andrzej duda",
        "diplomacy",
        "europe",
        "joe biden",
        "kamala harris",
        "kiev",
        "nato",
        "poland",
        "russia",
        "sheet",
        "ukraine",
        "vladimir putin",
        "volodymyr zelensky",
        "war in ukraine",
    ]


def test_split_glued_keeps_what_it_cannot_explain() -> None:
    assert split_glued("Mystery TagKyiv", {"kyiv"}) == ["mystery tag", "kyiv"]


def test_fit_splits_glued_tags_against_the_corpus_vocabulary() -> None:
    vec = TagVectorizer().fit([["Russia"], ["sheet"], ["Russiasheet"], ["Russia", "sheet"]])
    assert set(vec.vocabulary_) == {"russia", "sheet"}
    assert vec.analyze(["Russiasheet"], vec.vocabulary_) == ["russia", "sheet"]


def test_idf_site_wide_tag_weighs_nothing_and_rare_tags_weigh_most() -> None:
    tag_lists = [["sheet", "ukraine"], ["sheet", "ukraine"], ["sheet", "crimea"], ["sheet"]]
    vec = TagVectorizer().fit(tag_lists)
    n = 4
    assert vec.weight("sheet") == pytest.approx(0.0)
    assert vec.weight("crimea") == pytest.approx(math.log((1 + n) / (1 + 1)))
    assert vec.weight("ukraine") == pytest.approx(math.log((1 + n) / (1 + 2)))
    assert vec.weight("crimea") > vec.weight("ukraine") > vec.weight("sheet")
    rows = vec.transform(tag_lists).toarray()
    # Unit rows where any weighted tag exists; the "sheet"-only article is a zero row.
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), [1, 1, 1, 0])


def test_tag_keys_most_specific_first_weightless_and_unknown_dropped() -> None:
    tag_lists = [["sheet", "ukraine"], ["sheet", "ukraine"], ["sheet", "crimea"], ["sheet"]]
    tag_lists += [["Kyiv", "sheet"], ["Odesa", "sheet"]]
    vec = TagVectorizer(aliases={"kiev": "kyiv"}).fit(tag_lists)
    # "sheet" (on every article) weighs nothing; an unknown tag has no weight either.
    assert vec.tag_keys(["Sheet", "Ukraine", "CRIMEA", "Mars"]) == ["crimea", "ukraine"]
    # Equal weights keep the article's own order; aliases resolve; duplicates fold.
    assert vec.tag_keys(["Odesa", "Kiev", "kyiv"]) == ["odesa", "kyiv"]
    assert vec.tag_keys(["Kiev", "Odesa"]) == ["kyiv", "odesa"]


def test_max_df_and_min_df_prune() -> None:
    vec = TagVectorizer(min_df=2, max_df=0.5).fit([["a", "b"], ["a", "c"], ["a", "c"], ["d"]])
    assert list(vec.vocabulary_) == ["c"]
    with pytest.raises(ValueError, match="min_df"):
        TagVectorizer(min_df=0).fit([["a"]])


def test_smoothing_damps_common_single_tags() -> None:
    tag_lists = [["usa"], ["usa"], ["usa"], ["rare"], ["rare", "usa"], ["x"]]
    plain = TagVectorizer().fit(tag_lists).transform(tag_lists).toarray()
    smooth = TagVectorizer(smoothing=2.0).fit(tag_lists).transform(tag_lists).toarray()
    assert plain[0] @ plain[1] == pytest.approx(1.0)
    assert smooth[0] @ smooth[1] < 0.1
    assert smooth[3] @ smooth[4] > smooth[0] @ smooth[1]
