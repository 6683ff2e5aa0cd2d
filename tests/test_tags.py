"""Tag normalisation, aliases, glued-tag splitting and IDF weighting."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from models import tags as tags_module
from models.records import read_articles
from models.tagnorm import normalize_tag
from models.tags import GluedIndex, TagVectorizer, load_aliases, split_glued
from tests.paths import SAMPLE_ARTICLES

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


def _segment_before_index(
    text: str, vocabulary: Mapping[str, object] | set[str]
) -> list[str] | None:
    """The segmentation as it was before GluedIndex (map rebuilt per call): the oracle."""
    squeezed = text.replace(" ", "")
    spaced, position = set(), 0
    for char in text:
        if char == " ":
            spaced.add(position)
        else:
            position += 1
    known = {entry.replace(" ", ""): entry for entry in vocabulary if entry and entry != text}
    n = len(squeezed)
    best: list[tuple[int, list[str], bool] | None] = [None] * (n + 1)
    best[0] = (0, [], False)
    for end in range(1, n + 1):
        for start in range(max(0, end - 60), end):
            prefix = best[start]
            word = known.get(squeezed[start:end])
            if prefix is None or word is None:
                continue
            glued = prefix[2] or (0 < start and start not in spaced)
            candidate = (prefix[0] + 1, [*prefix[1], word], glued)
            current = best[end]
            if current is None or candidate[0] < current[0]:
                best[end] = candidate
    result = best[n]
    if result is None or len(result[1]) < 2 or not result[2]:
        return None
    return result[1]


def _sample_tag_counts() -> Counter[str]:
    articles = read_articles([SAMPLE_ARTICLES]).articles
    return Counter(normalize_tag(t) for a in articles for t in a.tags if normalize_tag(t))


def test_segment_with_index_equals_the_per_call_map_on_sample_and_seed_tags() -> None:
    counts = _sample_tag_counts()
    seed = {normalize_tag(p) for p in tags_module._CASE_BOUNDARY.split(SEED_TAG_LINE)}
    seed |= {"andrzej duda", "russia", "sheet", "new york", "newyork", "new", "york"}
    rng = random.Random(0)
    names = sorted(counts)
    # The sample's own tags (what fit segments), glued pairs and triples of them, and spaced
    # spellings, so the comparison covers splits, non-splits and ambiguous spellings.
    texts = list(names)
    texts += ["".join(rng.sample(names, 2)) for _ in range(300)]
    texts += [" ".join(rng.sample(names, 3)) for _ in range(100)]
    texts += ["russiasheet", "newyorksheet", "new yorksheet", "andrzej dudadiplomacy"]
    splits = 0
    for vocabulary in (counts, {**counts, **dict.fromkeys(seed, 1)}):
        index = GluedIndex(vocabulary)
        for text in texts:
            want = _segment_before_index(text, vocabulary)
            assert tags_module._segment(text, index) == want, text
            splits += want is not None
    assert splits > 300  # the glued pairs really were split


def test_split_glued_seed_line_equals_the_per_call_map() -> None:
    known = {normalize_tag(t) for t in tags_module._CASE_BOUNDARY.split(SEED_TAG_LINE)}
    known = (known - {"andrzej dudadiplomacy"}) | {"andrzej duda", "diplomacy"}
    known = (known - {"russiasheet"}) | {"russia", "sheet"}
    expected = []
    for piece in tags_module._CASE_BOUNDARY.split(SEED_TAG_LINE):
        norm = normalize_tag(piece)
        expected += [norm] if norm in known else _segment_before_index(norm, known) or [norm]
    assert split_glued(SEED_TAG_LINE, GluedIndex(known)) == expected
    assert split_glued(SEED_TAG_LINE, known) == expected
    assert "russia" in expected and "andrzej duda" in expected


def test_transform_builds_the_split_index_once_per_vocabulary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = []
    real = GluedIndex.__init__

    def counting(self: GluedIndex, vocabulary: Mapping[str, object] | set[str]) -> None:
        built.append(len(vocabulary))
        real(self, vocabulary)

    vec = TagVectorizer().fit([["Russia"], ["sheet"], ["Russia", "sheet"], ["Kyiv"], ["Kyiv"]])
    monkeypatch.setattr(GluedIndex, "__init__", counting)
    rows = vec.transform([["Russiasheet"], ["KyivRussia"], ["sheetKyiv", "Russiasheet"]])
    assert built == [len(vec.vocabulary_)]
    assert rows.getnnz(axis=1).tolist() == [2, 2, 3]
