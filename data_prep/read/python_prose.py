"""The built-in ``{python_prose}`` source: English prose present on every machine that installed the project.

Two parts, each one input of its own (so ``report.json`` counts them apart):

``{python_prose}/package_descriptions``
    the long description (the body of ``METADATA``, or its ``Description`` header in older metadata) of every
    distribution installed in the running interpreter's site directories (``site-packages`` of the environment,
    and the user's site directory when enabled), one document per distribution, sorted by normalised name. The
    first one found of a name wins (site directories in ``sysconfig`` / ``site`` order, then the metadata
    directory's name); empty descriptions and ``UNKNOWN`` (what old setuptools wrote for none) are skipped.
``{python_prose}/pydoc_topics``
    each entry of ``pydoc_data.topics.topics`` (the language reference sections ``help("assignment")`` shows), one
    document per topic, sorted by topic name. None when the Python build ships without ``pydoc_data``.

The source ``{python_prose}`` is both parts. ``Document.position`` is the 0-based index in that sorted order
(:func:`documents` gives the names beside the texts, for audits). Only the site directories are searched, never
``sys.path``: the current directory, ``PYTHONPATH`` and test runners' path changes would otherwise change the
corpus (the project's own ``*.egg-info`` in a checkout, for one). So the corpus is the same on every run in the
same environment, from any directory; its identity for the resumable pipeline (:func:`identity`) is a hash of
its texts, so installing or upgrading a package re-reads it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import site
import sysconfig

from data_prep.errors import DataPrepError

PLACEHOLDER = "{python_prose}"
PACKAGE_DESCRIPTIONS = "package_descriptions"
PYDOC_TOPICS = "pydoc_topics"
PARTS = (PACKAGE_DESCRIPTIONS, PYDOC_TOPICS)
# What old setuptools wrote into Description when a package gave none.
_NO_DESCRIPTION = {"", "UNKNOWN"}


def part_paths(source: str) -> list[str] | None:
    """The input paths (``{python_prose}/<part>``) a source names, or None when it is not this source."""
    if PLACEHOLDER not in source:
        return None
    if source == PLACEHOLDER:
        return [f"{PLACEHOLDER}/{part}" for part in PARTS]
    if source.startswith(PLACEHOLDER + "/") and source[len(PLACEHOLDER) + 1 :] in PARTS:
        return [source]
    valid = ", ".join([PLACEHOLDER, *(f"{PLACEHOLDER}/{part}" for part in PARTS)])
    raise DataPrepError(f"source '{source}': {PLACEHOLDER} is a built-in source, not a path; write one of {valid}")


def part_of(path: str) -> str:
    part = path[len(PLACEHOLDER) + 1 :] if path.startswith(PLACEHOLDER + "/") else ""
    if part not in PARTS:
        raise DataPrepError(f"'{path}' is not a part of {PLACEHOLDER}; expected one of {list(PARTS)}")
    return part


def documents(path: str) -> list[tuple[str, str]]:
    """``(name, text)`` of each document of the part ``path`` names, in order (position = index)."""
    part = part_of(path)
    return package_descriptions() if part == PACKAGE_DESCRIPTIONS else pydoc_topics()


def identity(path: str) -> str:
    """A hash of the part's names and texts: what decides its documents, for the pipeline's fingerprints."""
    digest = hashlib.sha256()
    for name, text in documents(path):
        for value in (name, text):
            data = value.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)
    return digest.hexdigest()


def site_directories() -> list[str]:
    """The running interpreter's site directories that exist, in lookup order, each once."""
    paths = sysconfig.get_paths()
    candidates = [paths["purelib"], paths["platlib"], *getattr(site, "getsitepackages", list)()]
    if site.ENABLE_USER_SITE:
        candidates.append(site.getusersitepackages())
    found, seen = [], set()
    for directory in candidates:
        real = os.path.realpath(directory)
        if real not in seen and os.path.isdir(real):
            seen.add(real)
            found.append(directory)
    return found


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def _description(distribution: importlib.metadata.Distribution) -> str:
    try:
        metadata = distribution.metadata
    except Exception:  # an unreadable or malformed METADATA file: that package gives no document
        return ""
    if metadata is None:
        return ""
    payload = metadata.get_payload() if hasattr(metadata, "get_payload") else None
    if isinstance(payload, str) and payload.strip():
        return payload
    # Older metadata: a header, its continuation lines already de-indented by importlib.metadata.
    header = metadata.get("Description")
    return header if isinstance(header, str) else ""


def package_descriptions() -> list[tuple[str, str]]:
    """``(normalised name, long description)`` of each installed distribution that has one, sorted by name."""
    chosen: dict[str, str] = {}
    for directory in site_directories():
        # Within a directory, by the metadata directory's name: importlib lists them in os.listdir order.
        found = sorted(importlib.metadata.distributions(path=[directory]), key=lambda d: str(getattr(d, "_path", "")))
        for distribution in found:
            try:
                name = distribution.metadata["Name"]
            except Exception:
                continue
            if not name or _normalised(name) in chosen:
                continue
            chosen[_normalised(name)] = _description(distribution)
    return [(name, text) for name, text in sorted(chosen.items()) if text.strip() not in _NO_DESCRIPTION]


def pydoc_topics() -> list[tuple[str, str]]:
    """``(topic, text)`` of each ``pydoc_data`` topic, sorted by topic; empty without ``pydoc_data``."""
    try:
        from pydoc_data.topics import topics
    except ImportError:
        return []
    return [(name, topics[name]) for name in sorted(topics) if isinstance(topics[name], str) and topics[name].strip()]
