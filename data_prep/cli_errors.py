"""One-line command-line errors for both of our CLIs (``python -m data_prep`` and ``python -m lit_pretrain``).

jsonargparse prints its whole usage before an error, quotes a YAML problem in ``"<unicode string>"`` instead of
the file, and says only that a mistyped key is not accepted. Here an error is one line that names the culprit:
the YAML file and the line and column of its problem, or the unknown key with the nearest valid one
(``--model.lrr`` -> ``--model.lr``).
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Iterator

import yaml

HELP_LINE = "(run with --help for the list of options)"


class OneLineErrors:
    """Mixin for a jsonargparse ``ArgumentParser``: ``error`` writes one line and exits 2. Set :attr:`argv` to the
    arguments being parsed (the CLIs do) so a YAML error can name its ``--config`` file."""

    argv: list[str] | None = None

    def error(self, message: str, *args, **kwargs):  # noqa: D102 - argparse's signature
        sys.stderr.write(f"error: {explain(str(message), self, self.argv or sys.argv[1:])}\n{HELP_LINE}\n")
        raise SystemExit(2)


def explain(message: str, parser, argv: list[str]) -> str:
    """The one line for jsonargparse's ``message``."""
    line = " ".join(message.split())
    if line.startswith("Problems parsing config"):
        broken = next(((path, problem) for path, problem in yaml_problems(config_files(argv))), None)
        if broken is not None:
            path, problem = broken
            return f"config file '{path}' is not valid YAML ({problem}); fix the file"
        return line
    unknown = unknown_key(line)
    if unknown is not None:
        flag = unknown.startswith("--")
        nearest = nearest_key(unknown.lstrip("-"), all_keys(parser))
        if nearest is not None:
            return f"{line}; did you mean {'--' + nearest if flag else repr(nearest)}?"
    return line


def unknown_key(line: str) -> str | None:
    """The key an "unknown option" message is about (``--model.lrr`` or ``model.lrr``), else None."""
    match = re.match(r"unrecognized arguments: (--[^\s=]+)", line)
    if match:
        return match.group(1)
    match = re.search(r"(?:Subcommand|Group) '([^']*)' does not accept option '([^']+)'", line)
    if match:
        group, key = match.groups()
        # A subcommand's message names the full key; a group's names the key inside the group.
        return key if line.startswith("Subcommand") or not group else f"{group}.{key}"
    return None


def all_keys(parser) -> set[str]:
    """Every dotted key the parser and its subcommands take (``model.lr``, ``trainer.max_steps``, ...)."""
    keys, seen = set(), set()

    def walk(current) -> None:
        if id(current) in seen:
            return
        seen.add(id(current))
        for action in getattr(current, "_actions", []):
            for option in action.option_strings:
                if option.startswith("--"):
                    keys.add(option[2:])
            for subparser in (getattr(action, "_name_parser_map", None) or {}).values():
                walk(subparser)

    walk(parser)
    keys.discard("help")
    return keys


def nearest_key(key: str, keys: set[str]) -> str | None:
    """The valid key closest to a mistyped one, preferring keys of the same group (``model.lrr`` -> ``model.lr``)."""
    group = key.rsplit(".", 1)[0] if "." in key else ""
    same_group = sorted(k for k in keys if group and k.startswith(group + "."))
    for candidates in (same_group, sorted(keys)):
        match = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
        if match:
            return match[0]
    return None


def config_files(argv: list[str]) -> Iterator[str]:
    """The ``--config`` files named on a command line, in order."""
    for position, argument in enumerate(argv):
        if argument == "--config" and position + 1 < len(argv):
            yield argv[position + 1]
        elif argument.startswith("--config="):
            yield argument.split("=", 1)[1]


def yaml_problems(paths) -> Iterator[tuple[str, str]]:
    """(path, "line L, column C: problem") of each file that does not parse as YAML."""
    for path in paths:
        try:
            with open(path) as handle:
                yaml.safe_load(handle)
        except OSError:
            continue
        except yaml.YAMLError as error:
            yield path, yaml_problem(error)


def yaml_problem(error: yaml.YAMLError) -> str:
    """Where and what a YAML error is, on one line (PyYAML's own message spans several)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem
