"""How patches are applied."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def wrap(cls: type, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Replace cls.name with make(original), keeping the original reachable for debugging."""
    original = getattr(cls, name)
    replacement = make(original)
    replacement.__name__ = name
    replacement.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(cls, name, replacement)
