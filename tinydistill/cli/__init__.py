"""Command line: each sub-command parses its options and calls one plain function of the library.

The sub-commands live in `cli.pipeline` (run, train-teacher, label, distil, evaluate, fetch-teacher, augment),
`cli.deploy` (export, predict, serve, push) and `cli.paper` (reproduce); `cli.options` holds what they share and
`cli.config` reads `--config` files. Every sub-command is always listed; one whose extra is missing says which
to install when it runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys

from tinydistill.cli import deploy, paper, pipeline
from tinydistill.cli.config import config_defaults, leaf_parser, read_config_file
from tinydistill.cli.options import extra, global_options
from tinydistill.errors import TinyDistillError
from tinydistill.folders import write_atomic

EPILOG = """examples:
  tinydistill run --data sst2 --labeled 200 --teacher minilm --students cbow,cbow-attn,bilstm
  tinydistill run --data reviews.csv --text-column review --label-column stars --test reviews_test.csv
  tinydistill train-teacher --data sst2 --labeled 200 --out teacher/
  tinydistill label teacher/ --data sst2 --out transfer.jsonl
  tinydistill distil transfer.jsonl --student cbow --out cbow/
  tinydistill evaluate cbow/ --data sst2
  tinydistill run --config run.toml --seed 1          # options from a TOML/YAML file; the command line wins
  tinydistill push runs/sst2-200-s0/students/cbow org/sst2-cbow   # with its model card; load it back by id

The paper's datasets (sst2, cola, emotion, agnews, imdb) are read from --data-dir or $TINYDISTILL_DATA
(a folder laid out like shared/data), else from the Hugging Face hub."""


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (no usage block), as every other error of the CLI."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"tinydistill: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="tinydistill", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Distil a BERT-class teacher fine-tuned on a few labels into a tiny, fast student.")
    global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    pipeline.register(sub)
    deploy.register(sub)
    paper.register(sub)
    for command in sub.choices.values():  # -q and --threads after the sub-command too
        if not any(action.dest == "quiet" for action in command._actions):
            global_options(command)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line; with --config, the file's values become the defaults the command line overrides."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "config", None):
        leaf = leaf_parser(parser, args)
        defaults = config_defaults(leaf, read_config_file(args.config), args.config)
        given = {w.split("=")[0] for w in (sys.argv[1:] if argv is None else argv) if w.startswith("--")}
        for action in leaf._actions:  # a repeatable option on the command line replaces the file's list
            if isinstance(action, argparse._AppendAction) and given & set(action.option_strings):
                defaults.pop(action.dest, None)
        leaf.set_defaults(**defaults)
        args = parser.parse_args(argv)
        if args.command == "reproduce":  # a run records its own (pipeline.run); the tables' folder records this
            resolved = {k: v for k, v in vars(args).items() if k not in ("func", "quiet", "threads", "command")}
            os.makedirs(args.out, exist_ok=True)
            write_atomic(os.path.join(args.out, f"config.resolved.{args.table}.json"),
                         json.dumps(resolved, indent=2, default=str))
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except TinyDistillError as exc:
        print(f"tinydistill: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help (0) or a bad option (2, its one line already printed)
        return exc.code if isinstance(exc.code, int) else 2
    args.command_line = shlex.join(["tinydistill", *(sys.argv[1:] if argv is None else argv)])  # for model cards
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("transformers", "datasets", "httpx", "huggingface_hub", "filelock"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        if args.threads is not None:
            with extra("train", args.command):
                import torch  # only when asked: predict and serve run without torch

            torch.set_num_threads(args.threads)
        args.func(args)
    except TinyDistillError as exc:
        print(f"tinydistill: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tinydistill: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tinydistill predict ... | head -1`: the reader has what it wanted
        _quiet_stdout()
        return 0
    return 0


def _quiet_stdout() -> None:
    """Point standard output at /dev/null, so that Python's flush at exit does not hit the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (captured in tests)
        pass


__all__ = ["build_parser", "main", "parse_args"]
