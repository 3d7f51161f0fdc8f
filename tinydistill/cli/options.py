"""What the sub-commands share: checked number types, option groups, the global flags, options built from a
dataclass, and the one-line error for a missing extra. Building a parser imports no torch."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tinydistill.errors import TinyDistillError, check_number, expected


def csv_list(value: str) -> list[str]:
    """`a, b,,c` -> ["a", "b", "c"]: the comma lists of --students, --datasets, --peers."""
    return [v.strip() for v in value.split(",") if v.strip()]


def number(kind: str = "float", **bounds: Any):
    """An argparse `type=` that parses a number and checks its range (`errors.check_number`'s bounds), so a bad
    value is argparse's one-line error (exit 2) before any work: `type=number("int", minimum=1)`."""
    def parse(value: str) -> int | float:
        try:
            parsed: int | float = int(value) if kind == "int" else float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not {expected(kind, **bounds)}") from None
        try:
            check_number("", parsed, kind, **bounds)
        except TinyDistillError:
            raise argparse.ArgumentTypeError(f"{value} is not {expected(kind, **bounds)}") from None
        return parsed

    parse.__name__ = f"number ({expected(kind, **bounds)})"
    return parse


SIZE, SEED, POSITIVE = number("int", minimum=1), number("int", minimum=0), number(above=0)


@contextmanager
def extra(name: str, command: str) -> Iterator[None]:
    """Turn an ImportError of the block into the one-line error (exit 2) that says which extra to install.

    Each command imports its heavy or optional modules inside this block, not at the top of the CLI, so that
    every sub-command is listed in --help whatever is installed and `predict` never pays for torch."""
    try:
        yield
    except ImportError as exc:
        missing = exc.name or str(exc)
        raise TinyDistillError(f"`tinydistill {command}` needs the {name} extra ({missing} is not installed): "
                               f"pip install 'tinydistill[{name}]'") from None


def global_options(p: argparse.ArgumentParser, top: bool = False) -> None:
    """`-q/--quiet` and `--threads`, accepted before the sub-command (`top`) and after it: a sub-parser's copy
    sets them only when given (SUPPRESS), so it never undoes the value given before the sub-command."""
    quiet: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    threads: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and the results", **quiet)
    p.add_argument("--threads", type=SIZE, help="CPU threads for the teacher (default: all cores; use 1 when other "
                   "jobs share the machine, as threads that wait on each other slow to a crawl)", **threads)


def field_options(p: argparse.ArgumentParser, cls: type, specs: dict[str, dict], names: Sequence[str]) -> None:
    """One option per field of the dataclass `cls` in `names`: `--field-name`, its default the field's (defined
    once, in the dataclass), the rest of the `add_argument` keywords from `specs[name]`. A bool field that is on
    by default becomes `--no-<name>`, one that is off `--<name>`. Read the options back with `from_options`."""
    defaults = cls()
    for name in names:
        spec = dict(specs[name])
        default = getattr(defaults, name)
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            on = default is True
            p.add_argument(f"--no-{name.replace('_', '-')}" if on else flag, dest=name,
                           action="store_false" if on else "store_true", **spec)
            continue
        p.add_argument(flag, default=default, **spec)


def from_options(cls: type, a: argparse.Namespace, names: Sequence[str] | None = None):
    """The dataclass `cls` from the parsed options of its fields (all of them, or `names`)."""
    wanted = names or [f.name for f in dataclasses.fields(cls)]
    return cls(**{name: getattr(a, name) for name in wanted})


def overwrite_option(p: argparse.ArgumentParser, kind: str) -> None:
    p.add_argument("--overwrite", action="store_true", help=f"write --out even when it exists and is not {kind} "
                   "(default: refuse, so that nothing tinydistill did not write is replaced)")


def scale_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", default="local", choices=["local", "ray"], help="local: this process; ray: a pool "
                   "of Ray actors (needs the scale extra; --out must be a folder) (default: %(default)s)")
    p.add_argument("--address", help="Ray cluster: auto (the one `ray start` runs here) or ray://HOST:10001 "
                   "(default: start Ray in this process)")
    p.add_argument("--workers", type=SIZE, default=1, help="Ray actors, each loading the teacher once "
                   "(default: %(default)s)")
    p.add_argument("--threads-per-worker", type=SIZE, default=1, help="CPUs (torch threads) per actor "
                   "(default: %(default)s)")
    p.add_argument("--gpus-per-worker", type=number(minimum=0), default=0.0,
                   help="GPUs per actor (default: %(default)s)")
    p.add_argument("--shard-rows", type=SIZE, default=10_000, help="texts per output shard: the unit of work and "
                   "of resuming (default: %(default)s)")
    p.add_argument("--batch-size", type=SIZE, default=64, help="texts per teacher batch (default: %(default)s)")


DEVICE_HELP = ("where the teacher runs: auto (a GPU when torch sees one, else the CPU), cpu, cuda or cuda:N; a GPU "
               "trains and labels under bf16 autocast (fp16 where the card lacks bf16) (default: %(default)s)")
LABEL_PRECISION_HELP = ("CPU labelling precision: int8 (dynamic quantization, 1.5-2x faster; 3-5x on CPUs with VNNI) "
                        "is used only when it "
                        "scores within half a point of fp32 on labelled texts, else fp32 with a warning "
                        "(default: %(default)s)")
STUDENT_DEVICE_HELP = ("where students train: cpu, auto, cuda or cuda:N (a GPU pays off for a BiLSTM on a large "
                       "transfer set) (default: %(default)s)")


def device_options(p: argparse.ArgumentParser, labelling: bool = True, students: bool = False) -> None:
    """`--device` (and `--label-precision`, `--student-device`) for every sub-command that runs the teacher; they
    are checked by `device.resolve_device` when the command runs (torch is not imported to build the parser)."""
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    if labelling:
        p.add_argument("--label-precision", default="fp32", choices=["fp32", "int8"], help=LABEL_PRECISION_HELP)
    if students:
        p.add_argument("--student-device", default="cpu", help=STUDENT_DEVICE_HELP)


def abstain_options(p: argparse.ArgumentParser) -> None:
    """`--min-confidence` and `--max-unknown`, shared by `predict` and `serve`."""
    p.add_argument("--min-confidence", type=number(minimum=0, maximum=1), metavar="P",
                   help="abstain (label null, with a reason) when the top probability is under P")
    p.add_argument("--max-unknown", type=number(minimum=0, maximum=1), metavar="R",
                   help="abstain when more than a share R (0-1) of a text's words are not in the model's vocabulary")
