"""Tag normalisation: the standard library only, so the API process can fold tags.

``models/tags.py`` (the fitted tag vectors, which need scikit-learn) builds on this; the API
imports only this module, keeping the training stack out of a Redis-mode worker.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_PUNCT = re.compile(r"[\W_]+", re.UNICODE)


def normalize_tag(tag: str) -> str:
    """Case-fold, strip accents, and fold punctuation and whitespace to single spaces."""
    folded = unicodedata.normalize("NFKD", tag.casefold())
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return _PUNCT.sub(" ", folded).strip()


# Folding a tag is a Unicode decomposition, and a corpus or a site repeats few spellings (61k
# tags, 318 distinct, in the 50k benchmark corpus): training, shared tags and the rules engine
# fold each spelling once per process through this one cache.
@lru_cache(maxsize=1 << 16)
def fold_tag(tag: str) -> str:
    """:func:`normalize_tag`, cached per spelling."""
    return normalize_tag(tag)
