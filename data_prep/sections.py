"""Building config dataclasses from plain (YAML- or JSON-loaded) dicts, naming any unknown key in full."""

from __future__ import annotations

from dataclasses import fields, is_dataclass

from data_prep.errors import DataPrepError


def build_section(cls, values: dict, prefix: str):
    """Instantiate dataclass ``cls`` from a nested dict, recursing into nested dataclass sections.

    ``prefix`` is the key path of ``cls`` in the whole config (``"filters."``), so an error names the full key."""
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if key not in known:
            raise DataPrepError(f"unknown data_prep config key '{name}'; expected one of {sorted(known)}")
        section = known[key].default_factory
        if is_dataclass(section) and isinstance(value, dict):
            kwargs[key] = build_section(section, value, prefix=f"{name}.")
        elif is_dataclass(section) and value is None:
            kwargs[key] = section()
        else:
            kwargs[key] = value
    return cls(**kwargs)
