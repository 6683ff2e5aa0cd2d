"""Reading the app's settings: the error a bad one raises and the parsers of numbers.

Values come from ``create_app``'s mapping or from ``RECS_*`` variables, which Flask parses as
JSON where it can; a number given as a string is parsed here. Every error names the setting
and its environment variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ConfigError(RuntimeError):
    """The app cannot start with this configuration."""


def int_setting(config: Mapping[str, Any], name: str, low: int, high: int) -> int:
    """A whole-number setting from ``low`` to ``high``, or ConfigError naming it."""
    value = config[name]
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} (env RECS_{name}) must be an integer from {low} to {high}")
    return value


def number_setting(config: Mapping[str, Any], name: str, low: float, high: float) -> float:
    """A number setting from ``low`` to ``high``, or ConfigError naming it and its range."""
    value = config[name]
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(f"{name} (env RECS_{name}) must be a number from {low:g} to {high:g}")
    return float(value)
