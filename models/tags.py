"""Tag aliases, glued-tag splitting and IDF-weighted tag vectors (folding: models/tagnorm.py)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from models.tagnorm import fold_tag, normalize_tag

# A lower-case letter (or digit) followed by an upper-case one: where scraped tag lists that lost
# their separators ("Joe BidenKamala Harris") glued two tags together.
_CASE_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def load_aliases(path: str | Path) -> dict[str, str]:
    """Read an alias file: one ``old -> new`` per line, ``#`` comments; both sides normalised."""
    aliases: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ValueError(f"tag alias file {path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"tag alias file {path}: not valid UTF-8 ({exc.reason})") from None
    except OSError as exc:
        raise ValueError(f"tag alias file {path}: cannot read ({exc.strerror or exc})") from None
    # Split on "\n" only, so line numbers match an editor's (splitlines() also splits at
    # form feeds, U+2028 and other characters).
    for number, raw_line in enumerate(text.split("\n"), start=1):
        line = raw_line.removesuffix("\r")
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        if "->" not in content:
            raise ValueError(
                f"tag alias file {path}:{number}: expected 'old -> new', got {line[:80]!r}"
            )
        old, new = (normalize_tag(part) for part in content.split("->", 1))
        if not old or not new:
            raise ValueError(f"tag alias file {path}:{number}: empty tag in {line[:80]!r}")
        aliases[old] = new
    return aliases


# The longest single tag a glued string is searched for (characters, spaces removed).
_MAX_PIECE = 60


class GluedIndex:
    """A tag vocabulary keyed by each entry's space-free form, built once for many splits.

    Splitting looks up every substring of a glued tag; the map was rebuilt from the whole
    vocabulary for each tag tried (each tag pruned by ``min_df``, on every transform), costing
    more than the splitting itself.
    """

    def __init__(self, vocabulary: Mapping[str, object] | set[str]) -> None:
        self.vocabulary = vocabulary
        by_squeezed: dict[str, list[str]] = {}
        for entry in vocabulary:
            if entry:
                by_squeezed.setdefault(entry.replace(" ", ""), []).append(entry)
        self._by_squeezed = by_squeezed
        # No piece longer than the longest entry can match, so the search window stops there.
        self.longest = min(_MAX_PIECE, max(map(len, by_squeezed), default=0))

    def __contains__(self, tag: object) -> bool:
        return tag in self.vocabulary

    def lookup(self, squeezed: str, exclude: str) -> str | None:
        """The entry spelled ``squeezed`` without spaces, other than ``exclude``.

        Of several entries with one space-free spelling ("new york" and "newyork") the last in
        vocabulary order wins, as it did when the map was a dict built in that order.
        """
        entries = self._by_squeezed.get(squeezed)
        if entries is None:
            return None
        for entry in reversed(entries):
            if entry != exclude:
                return entry
        return None


def split_glued(tag: str, vocabulary: Mapping[str, object] | set[str] | GluedIndex) -> list[str]:
    """Split a scraped tag string that lost its separators into known tags.

    ``"Joe BidenKamala HarrisKiev"`` first splits at lower->upper case boundaries; each piece
    that is still unknown (``"Russiasheet"``) is segmented into known normalised tags where
    that covers it completely. Pieces that cannot be explained are kept as they are, so no
    information is thrown away. Pass a :class:`GluedIndex` when splitting many tags against
    one vocabulary.
    """
    index = vocabulary if isinstance(vocabulary, GluedIndex) else GluedIndex(vocabulary)
    out: list[str] = []
    for piece in _CASE_BOUNDARY.split(tag):
        norm = fold_tag(piece)
        if not norm:
            continue
        if norm in index:
            out.append(norm)
            continue
        out.extend(_segment(norm, index) or [norm])
    return out


def _segment(text: str, index: GluedIndex) -> list[str] | None:
    """Fewest-pieces segmentation of ``text`` into vocabulary entries other than ``text``.

    Only a segmentation with at least one cut inside a word counts: "north korea" is a tag in
    its own right even where "north" and "korea" are tags, but "russiasheet" is two glued tags.
    """
    squeezed = text.replace(" ", "")
    # Positions in the squeezed string that had a space before them in the original.
    spaced, position = set(), 0
    for char in text:
        if char == " ":
            spaced.add(position)
        else:
            position += 1
    n = len(squeezed)
    best: list[tuple[int, list[str], bool] | None] = [None] * (n + 1)
    best[0] = (0, [], False)
    for end in range(1, n + 1):
        for start in range(max(0, end - index.longest), end):
            prefix = best[start]
            if prefix is None:
                continue
            word = index.lookup(squeezed[start:end], text)
            if word is None:
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


class TagVectorizer:
    """IDF-weighted, L2-normalised tag vectors.

    Parameters
    ----------
    aliases : mapping of normalised tag to its canonical form (e.g. ``{"kiev": "kyiv"}``).
    min_df : tags on fewer articles than this are dropped (1 keeps every tag).
    max_df : tags on more than this share of articles are dropped outright.
    split_glued : split tags that are concatenations of other known tags.

    Notes
    -----
    The IDF is ``ln((1 + n) / (1 + df))``, which is 0 for a tag on every article. scikit-learn's
    smoothed IDF adds 1, which would leave a site-name tag ("sheet" on every page) weighing a
    tenth of a rare tag, and two articles whose only tag is the site name would match perfectly.
    """

    def __init__(
        self,
        *,
        aliases: Mapping[str, str] | None = None,
        min_df: int = 1,
        max_df: float = 1.0,
        split_glued: bool = True,
        smoothing: float = 0.0,
    ) -> None:
        self.aliases = aliases
        self.min_df = min_df
        self.max_df = max_df
        self.split_glued = split_glued
        self.smoothing = smoothing

    def analyze(
        self, tags: Iterable[str], known: Mapping[str, object] | GluedIndex | None = None
    ) -> list[str]:
        """Normalised, alias-resolved, de-duplicated tags of one article.

        A tag not in ``known`` is split into known tags where it is several glued together.
        """
        aliases = self.aliases or {}
        seen: dict[str, None] = {}
        for raw in tags:
            norm = fold_tag(raw)
            if not norm:
                continue
            pieces = [norm]
            glued = getattr(self, "glued_", {})
            if norm in glued:
                pieces = glued[norm]
            elif self.split_glued and known is not None and norm not in known:
                pieces = split_glued(raw, self._glued_index(known))
            for piece in pieces:
                seen.setdefault(aliases.get(piece, piece), None)
        return list(seen)

    glued_: dict[str, list[str]]

    def _glued_index(self, known: Mapping[str, object] | GluedIndex) -> GluedIndex:
        """The split index of ``known``, kept for the next call with the same mapping.

        Callers pass one vocabulary for a whole corpus (``vocabulary_``, or fit's counts), and
        those mappings are replaced, never changed in place, so identity is a safe key.
        """
        if isinstance(known, GluedIndex):
            return known
        cached: GluedIndex | None = self.__dict__.get("_glued_cache")
        if cached is None or cached.vocabulary is not known:
            cached = GluedIndex(known)
            self._glued_cache = cached
        return cached

    def fit(self, tag_lists: Sequence[Sequence[str]]) -> TagVectorizer:
        """Learn the tag vocabulary and IDF."""
        if self.min_df < 1:
            raise ValueError(f"min_df must be >= 1, got {self.min_df}")
        if not 0.0 < self.max_df <= 1.0:
            raise ValueError(f"max_df must be in (0, 1], got {self.max_df}")
        n = len(tag_lists)
        self.glued_ = {}
        plain = Counter(t for tags in tag_lists for t in set(self.analyze(tags)))
        # A tag that is other, more common tags glued together ("russiasheet") is split.
        index = GluedIndex(plain)
        if self.split_glued:
            for tag, count in plain.items():
                pieces = _segment(tag, index)
                if pieces and all(plain[piece] >= count for piece in pieces):
                    self.glued_[tag] = pieces
        df: Counter[str] = Counter()
        for tags in tag_lists:
            df.update(set(self.analyze(tags, index)))
        kept = sorted(t for t, c in df.items() if c >= self.min_df and c <= self.max_df * n)
        self.vocabulary_ = {tag: i for i, tag in enumerate(kept)}
        dfs = np.array([df[t] for t in kept], dtype=np.float64)
        self.idf_ = np.log((1.0 + n) / (1.0 + dfs))
        self.document_frequency_ = dfs.astype(np.int64)
        self.n_documents_ = n
        return self

    def transform(self, tag_lists: Sequence[Sequence[str]]) -> sp.csr_matrix:
        """IDF-weighted L2-normalised tag rows (an article with no known tag is a zero row)."""
        vocab = self.vocabulary_
        rows, cols = [], []
        for row, tags in enumerate(tag_lists):
            for tag in self.analyze(tags, vocab):
                col = vocab.get(tag)
                if col is not None:
                    rows.append(row)
                    cols.append(col)
        data = self.idf_[cols] if cols else np.zeros(0)
        matrix = sp.csr_matrix(
            (data, (rows, cols)), shape=(len(tag_lists), len(vocab)), dtype=np.float64
        )
        matrix.eliminate_zeros()
        if matrix.shape[1] == 0:
            return matrix  # a corpus without tags: text-only similarity
        if not self.smoothing:
            return normalize(matrix, norm="l2", copy=False)
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel() + self.smoothing**2)
        return sp.csr_matrix(sp.diags(1.0 / norms) @ matrix)

    def tag_keys(self, tags: Iterable[str]) -> list[str]:
        """An article's normalised tags that carry weight, most specific (highest IDF) first.

        The one rule behind every stored ``tag_keys`` (publish, the update writer, embedded
        mode), so both serving modes show the same shared tags. The sort is stable: equal
        weights keep the article's own tag order.
        """
        weighted = [(tag, self.weight(tag)) for tag in self.analyze(tags, self.vocabulary_)]
        ordered = sorted((pair for pair in weighted if pair[1] > 0), key=lambda pair: -pair[1])
        return [tag for tag, _ in ordered]

    def weight(self, tag: str) -> float:
        """IDF weight of one (normalised) tag; 0 for an unknown one."""
        col = self.vocabulary_.get(tag)
        return 0.0 if col is None else float(self.idf_[col])

    @property
    def terms_(self) -> list[str]:
        """Tag vocabulary ordered by column."""
        return list(self.vocabulary_)
