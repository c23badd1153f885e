"""The one registry of quality filters: each filter module registers its name, config section, builder, the
profiles that switch it on, and its place in the run order; :class:`data_prep.quality.filter_config.FilterConfig`
and :class:`data_prep.quality.filters.QualityFilters` are built from it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

PROFILES = ("code", "web", "none")


@dataclass(frozen=True)
class QualityFilter:
    """One filter: ``build(section, filters)`` returns ``keep(stats) -> bool`` (``rewrite(text, section)`` for a
    filter that rewrites the kept text instead, which runs after every other); ``order`` places it in the run
    (cheap ones first); ``profiles`` switch it on when its ``enabled`` is null."""

    name: str
    config: type
    order: int
    profiles: tuple[str, ...]
    build: Callable | None = None
    rewrite: Callable | None = None
    uses_profile: bool = False  # build(section, profile): a default that depends on filters.profile


REGISTRY: dict[str, QualityFilter] = {}


def register(
    name: str, config: type, order: int, profiles: tuple[str, ...], rewrite: bool = False, uses_profile: bool = False
):
    """Decorator of a filter's builder (or, with ``rewrite``, of its rewriting function)."""

    def decorate(function: Callable) -> Callable:
        if name in REGISTRY:
            raise ValueError(f"quality filter {name!r} is registered twice")
        unknown = set(profiles) - set(PROFILES)
        if unknown:
            raise ValueError(f"quality filter {name!r}: unknown profiles {sorted(unknown)}")
        kind = {"rewrite": function} if rewrite else {"build": function}
        REGISTRY[name] = QualityFilter(name, config, order, tuple(profiles), uses_profile=uses_profile, **kind)
        return function

    return decorate


def in_run_order() -> list[QualityFilter]:
    return sorted(REGISTRY.values(), key=lambda spec: spec.order)
