"""Model configuration: every hyper-parameter, with defaults, validation and a stable hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from models import jsonsafe


@dataclass(frozen=True)
class ModelConfig:
    """All hyper-parameters of a model. Stored in the artifact's manifest.

    ``alpha`` blends the two similarities: ``alpha * cos(text) + (1 - alpha) * cos(tags)``.
    The re-ranking stage reorders an exact pool of ``rerank_pool`` candidates by
    ``(1 - rerank_weight) * blended + rerank_weight * latent`` where *latent* is the cosine of
    truncated-SVD vectors of the blended rows, the query expanded with its
    ``rerank_feedback`` best first-pass candidates (pseudo-relevance feedback).
    """

    k: int = 50
    # Chosen on docs/evaluation.md: the most tag weight that costs Reuters at most 0.015 of
    # P@10 (0.005 under the 0.02 budget); with it the blend beats text-only and tags-only on MIND.
    alpha: float = 0.93
    min_score: float = 0.0
    # text
    # A title word counts as two body words (docs/evaluation.md: better on Reuters and MIND).
    title_weight: float = 2.0
    sublinear_tf: bool = True
    stop_words: str | None = "english"
    strip_accents: str | None = "unicode"
    text_min_df: int = 2
    text_max_df: float = 0.5
    ngram_max: int = 1
    max_features: int | None = None
    # tags
    # A tag on one article matches nothing; it only dilutes the shared tags (docs/evaluation.md).
    tag_min_df: int = 2
    tag_max_df: float = 1.0
    split_glued_tags: bool = True
    tag_aliases: dict[str, str] | None = None
    # Damps articles whose only tags are common ones (a lone "usa" is weak evidence).
    tag_smoothing: float = 3.0
    # re-ranking
    rerank: bool = True
    rerank_pool: int = 100
    rerank_weight: float = 0.6
    rerank_components: int = 150
    # The SVD is fitted on at most this many rows (a seeded sample), so its cost stops growing
    # with the corpus; every row is still projected (docs/evaluation.md: same quality).
    rerank_fit_rows: int = 20_000
    rerank_feedback: int = 3
    rerank_feedback_weight: float = 1.0
    random_state: int = 0

    def __post_init__(self) -> None:
        # A JSON 1 for a max_df is a share (all articles), not scikit-learn's "one document".
        for name in ("text_max_df", "tag_max_df"):
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))
        checks: list[tuple[bool, str]] = [
            (isinstance(self.k, int) and 1 <= self.k <= 1000, "k must be an integer in 1..1000"),
            (0.0 <= self.alpha <= 1.0, "alpha must be in [0, 1]"),
            (0.0 <= self.min_score <= 1.0, "min_score must be in [0, 1]"),
            (self.title_weight >= 0, "title_weight must be >= 0"),
            (self.stop_words in (None, "english"), "stop_words must be 'english' or null"),
            (
                self.strip_accents in (None, "unicode", "ascii"),
                "strip_accents must be 'unicode', 'ascii' or null",
            ),
            (_count(self.text_min_df), "text_min_df must be an integer >= 1 (articles)"),
            (_share(self.text_max_df), "text_max_df must be a number in (0, 1]"),
            (self.ngram_max in (1, 2, 3), "ngram_max must be 1, 2 or 3"),
            (self.max_features is None or self.max_features > 0, "max_features must be > 0"),
            (_count(self.tag_min_df), "tag_min_df must be an integer >= 1 (articles)"),
            (_share(self.tag_max_df), "tag_max_df must be a number in (0, 1]"),
            (self.rerank_pool >= 1, "rerank_pool must be >= 1"),
            (0.0 <= self.rerank_weight <= 1.0, "rerank_weight must be in [0, 1]"),
            (self.rerank_components >= 2, "rerank_components must be >= 2"),
            (
                _count(self.rerank_fit_rows) and self.rerank_fit_rows > self.rerank_components,
                "rerank_fit_rows must be an integer > rerank_components",
            ),
            (self.rerank_feedback >= 0, "rerank_feedback must be >= 0"),
            (self.rerank_feedback_weight >= 0, "rerank_feedback_weight must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"invalid model config: {message}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def config_hash(self) -> str:
        """Hash of every hyper-parameter, stable across runs and Python versions."""
        payload = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (validated)."""
        return ModelConfig(**{**self.to_dict(), **changes})

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> ModelConfig:
        """Build from a mapping, rejecting unknown keys by name."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown setting(s) {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"{source}: {exc}") from None
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> ModelConfig:
        """Read a JSON config file (any subset of the fields); errors say ``FILE:LINE: why``."""
        try:
            data = jsonsafe.loads(Path(path).read_bytes())
        except FileNotFoundError:
            raise ValueError(f"config file {path}: no such file") from None
        except OSError as exc:
            raise ValueError(f"config file {path}: cannot read ({exc.strerror or exc})") from None
        except jsonsafe.JSONInputError as exc:
            raise ValueError(f"config file {path}:{exc.line or 1}: {exc.reason}") from None
        return cls.from_dict(data, source=f"config file {path}")


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _share(value: object) -> bool:
    return isinstance(value, float) and 0.0 < value <= 1.0
