"""Configuration of the quality filters (stage 3): ``filters.profile`` plus one section per filter, every
threshold a key ``filters.<filter>.<threshold>`` with its published default. Each section is defined beside its
filter (:mod:`data_prep.quality.length`, ``code``, ``ratios``, ``gopher``, ``fineweb``, ``language``, ``c4``);
:class:`FilterConfig` has one field per registered filter, in run order (:mod:`data_prep.quality.registry`)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, make_dataclass
from typing import Literal

from data_prep.errors import DataPrepError

# Importing a filter module registers its filters.
from data_prep.quality import c4, code, fineweb, gopher, language, length, ratios  # noqa: F401
from data_prep.quality.registry import PROFILES, in_run_order
from data_prep.sections import build_section

FILTER_ORDER = tuple(spec.name for spec in in_run_order())
PROFILE_FILTERS = {profile: frozenset(s.name for s in in_run_order() if profile in s.profiles) for profile in PROFILES}


@dataclass
class _FilterConfigBase:
    """Document quality filters: a profile plus one section per filter (``filters.<name>.<threshold>``)."""

    profile: Literal["code", "web", "none"] = "none"
    """Which filters run when their ``enabled`` is null: ``code`` (source files), ``web`` (crawled prose) or
    ``none`` (only filters switched on explicitly)."""

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise DataPrepError(f"filters.profile is '{self.profile}'; expected one of {list(PROFILES)}")
        # Plain dicts (sections given as keyword arguments from Python) become their sections, unknown keys named.
        for section in fields(self):
            value = getattr(self, section.name)
            if isinstance(value, dict):
                setattr(self, section.name, build_section(section.default_factory, value, f"filters.{section.name}."))
        gopher.check_ngram_tables(self.gopher_repetition)

    def is_enabled(self, name: str) -> bool:
        enabled = getattr(self, name).enabled
        return name in PROFILE_FILTERS[self.profile] if enabled is None else bool(enabled)

    def active(self) -> list[str]:
        """Names of the filters that run, in the order they run."""
        return [name for name in FILTER_ORDER if self.is_enabled(name)]


FilterConfig = make_dataclass(
    "FilterConfig",
    [(spec.name, spec.config, field(default_factory=spec.config)) for spec in in_run_order()],
    bases=(_FilterConfigBase,),
)
FilterConfig.__module__ = __name__
FilterConfig.__doc__ = _FilterConfigBase.__doc__
