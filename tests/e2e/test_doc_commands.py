"""Every command in the README's and docs/'s fenced code blocks, checked against the code: fit/validate/test and
data_prep commands parse (``--print_config``: configs found, every key and override accepted, the same parser
the command would run), estimate commands run, export and plot arguments parse (they are run for real by
test_export_cli.py and test_plot.py), benchmark scripts (fenced or quoted inline) exist and accept every option
shown. A command of a
kind not listed here fails the test, so new docs cannot slip past it."""

from __future__ import annotations

import contextlib
import functools
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Placeholders the docs use for a cluster's values.
PLACEHOLDERS = {"N": "2", "$NODE_RANK": "0", "HOST": "127.0.0.1"}
# Commands that are not ours: installing, other tools' CLIs; the two set-up commands are what CI itself runs.
EXTERNAL = ("pip", "tensorboard", "ray", "sbatch", "kubectl", "helm", "jupyter", "ssh", "export", "cd")
# Covered elsewhere: the pipeline one-liner on an export (test_export_cli.py::test_the_pipeline_runs_on_the_export).
COVERED = ("python -c", "python -m pytest")


def doc_commands() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", page.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" # ")[0].strip()
                if (
                    not line
                    or line.startswith("#")
                    or not re.match(r"(python|torchrun|srun|pip|ray|tensorboard)\b", line)
                ):
                    continue
                for command in line.split("&&"):
                    found.append((page.name, " ".join(command.split())))
        # Benchmark commands are usually quoted inline: `python benchmarks/x.py --opt 1 [--other 2]`.
        for command in re.findall(r"`(python benchmarks/[^`]+)`", page.read_text()):
            found.append((page.name, " ".join(command.replace("[", " ").replace("]", " ").split())))
    return sorted(set(found))


COMMANDS = doc_commands()


def test_the_docs_show_commands():
    pages = {page for page, _ in COMMANDS}
    assert {"README.md", "training.md", "data.md", "scaling.md", "estimate.md", "export.md"} <= pages


def normalised(command: str) -> list[str]:
    """The argv (starting with ``python``) of a doc command: placeholders filled, srun and torchrun stripped to the module
    they start."""
    argv = [PLACEHOLDERS.get(token, token) for token in shlex.split(command)]
    if argv[0] == "srun":
        argv = argv[1:]
    if argv[0] == "torchrun":
        argv = ["python", *argv[argv.index("-m") :]]
    return argv


@functools.lru_cache(maxsize=None)
def script_help(script: str) -> str:
    result = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def exits_cleanly(function, argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        function(argv)
    assert exit_.value.code in (0, None), f"{argv}: exit {exit_.value.code}"
    return out.getvalue()


@pytest.mark.parametrize("page, command", COMMANDS, ids=[f"{p}:{c[:60]}" for p, c in COMMANDS])
def test_doc_command(page, command, monkeypatch):
    monkeypatch.chdir(REPO)
    if command.startswith(COVERED) or command.split()[0] in EXTERNAL:
        return
    argv = normalised(command)
    assert argv[0] == "python", f"{page}: unknown kind of command {command!r}; teach tests/e2e/test_doc_commands.py"
    if argv[1:3] == ["-m", "lit_pretrain"]:
        subcommand, args = argv[3], argv[4:]
        if subcommand in ("fit", "validate", "test"):
            from lit_pretrain.cli import main

            extra = [] if "--help" in args or "--print_config" in args else ["--print_config"]
            printed = exits_cleanly(main, [subcommand, *args, *extra])
            assert "--help" in args or "trainer:" in printed
        elif subcommand == "estimate":
            from lit_pretrain.estimate import main

            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                main(args)
            assert "GiB" in out.getvalue()
        elif subcommand in ("export", "plot"):
            module = __import__(f"lit_pretrain.{subcommand}", fromlist=["build_parser"])
            module.build_parser().parse_args(args)
        else:
            pytest.fail(f"{page}: unknown subcommand in {command!r}")
    elif argv[1:3] == ["-m", "data_prep"]:
        from data_prep.__main__ import main

        args = argv[3:]
        printed = exits_cleanly(main, args if "--help" in args else [*args, "--print_config"])
        assert "--help" in args or "sources:" in printed
    elif argv[1].startswith("benchmarks/"):
        script = REPO / argv[1]
        assert script.is_file(), f"{page}: {argv[1]} does not exist"
        shown = [token.split("=")[0] for token in argv[2:] if token.startswith("--")]
        text = script_help(str(script))
        assert all(option in text for option in shown), (command, shown)
    else:
        pytest.fail(f"{page}: unknown kind of command {command!r}; teach tests/e2e/test_doc_commands.py")
