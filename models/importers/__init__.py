"""Importers that turn public news datasets into :class:`~models.records.Article` records."""

from __future__ import annotations

from models.importers.common import ImportStats
from models.importers.mind import Impression, iter_mind, read_mind_behaviors
from models.importers.reuters import iter_reuters

__all__ = ["ImportStats", "Impression", "iter_mind", "iter_reuters", "read_mind_behaviors"]
