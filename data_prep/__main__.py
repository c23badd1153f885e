"""``python -m data_prep --config configs/data/stdlib.yaml [--sources '[...]'] [--output_dir DIR] [--any.key V]``"""

from __future__ import annotations

import sys

from jsonargparse import ActionConfigFile, ArgumentParser

from data_prep.cli_errors import OneLineErrors
from data_prep.config import DataPrepConfig
from data_prep.errors import DataPrepError
from data_prep.pipeline import prepare, summary


class OneLineErrorParser(OneLineErrors, ArgumentParser):
    """jsonargparse prints the whole usage before an error; users need only the line that names the culprit."""


def build_parser() -> ArgumentParser:
    parser = OneLineErrorParser(prog="python -m data_prep", description="Raw text to tokenized shards.")
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with any of the keys below.")
    parser.add_class_arguments(DataPrepConfig, fail_untyped=True, sub_configs=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.argv = sys.argv[1:] if argv is None else list(argv)
    values = parser.parse_args(argv).as_dict()
    values.pop("config", None)
    try:
        manifest = prepare(DataPrepConfig.from_dict(values))
    except DataPrepError as error:
        sys.stderr.write(f"error: {error}\n")
        return 1
    print(f"data_prep: {summary(manifest)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
