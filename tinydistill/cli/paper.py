"""`tinydistill reproduce {table2,table3,curves,teachers}`: the paper's experiments (`tinydistill.paper`).

The options are `paper.setup.Setup`'s (`setup_from_args`); the experiments import torch, so `cmd_reproduce`
imports them when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tinydistill.cli.options import POSITIVE, SIZE, csv_list, device_options, extra, global_options, number
from tinydistill.config import STUDENTS, RunConfig
from tinydistill.paper.setup import CURVE_DATASETS, CURVE_SIZES, DATASETS, TABLE3_SIZES, Setup


def _ints(value: str) -> list[int]:
    return [int(v) for v in csv_list(value)]


def _seeds(value: str) -> dict[str | None, tuple[int, ...]]:
    """`0,1,2,imdb=0` -> {None: (0, 1, 2), "imdb": (0,)}: seeds for every dataset, then per-dataset ones."""
    every = [v for v in csv_list(value) if "=" not in v]
    by: dict[str | None, tuple[int, ...]] = {None: tuple(int(v) for v in every) or (0,)}
    for item in (v for v in csv_list(value) if "=" in v):
        ds, seeds = item.split("=", 1)
        by[ds] = tuple(int(v) for v in seeds.split("+"))
    return by


def setup_from_args(a: argparse.Namespace) -> Setup:
    """A `Setup` from `tinydistill reproduce` options; `--teacher minilm,imdb=mpnet-base` picks per dataset."""
    plain = [t for t in csv_list(a.teacher) if "=" not in t]
    epochs, tokens = getattr(a, "teacher_epochs", None), getattr(a, "max_length", None)
    device, precision = getattr(a, "device", "auto"), getattr(a, "label_precision", "fp32")
    return Setup(seeds=a.seeds[None], seeds_by={k: v for k, v in a.seeds.items() if k is not None},
                 teacher=plain[-1] if plain else Setup.teacher, transfer_scale=getattr(a, "transfer_scale", None),
                 transfer_max=getattr(a, "transfer_max", None), test_size=a.test_size,
                 base=RunConfig(teacher_epochs=epochs, max_length=tokens, device=device, label_precision=precision)
                 if epochs or tokens or device != "auto" or precision != "fp32" else None,
                 teachers=dict(t.split("=", 1) for t in csv_list(a.teacher) if "=" in t),
                 augment=getattr(a, "augment", Setup.augment), out=a.out, data_dir=a.data_dir,
                 peers=tuple(getattr(a, "peers", ())), students=tuple(getattr(a, "students", ())),
                 speed_teacher=getattr(a, "speed_teacher", None), progress=not getattr(a, "quiet", False))


def cmd_reproduce(a: argparse.Namespace) -> None:
    with extra("train", "reproduce"):  # torch and transformers run every experiment; the curves need matplotlib
        from tinydistill.device import resolve_device
        from tinydistill.paper.tables import curves, merge_table2, table2, table3, teachers

    if getattr(a, "merge", None):  # assembled from saved tables: nothing runs, so no device or setup is needed
        result = merge_table2(a.merge, a.datasets, a.out)
        print(Path(result["markdown"]).read_text())
        print(f"results: {result['json']}\ntable: {result['markdown']}")
        return
    resolve_device(a.device)  # a device torch does not see fails before any run starts
    s = setup_from_args(a)
    if a.table == "teachers":
        result = teachers(a.datasets, s, [t for t in csv_list(a.teacher) if "=" not in t], a.recipes)
    else:
        result = (table2(a.datasets, s) if a.table == "table2" else table3(a.sizes, s) if a.table == "table3"
                  else curves(a.datasets, a.sizes, s))
    print(Path(result["markdown"]).read_text())
    print(f"results: {result['json']}\ntable: {result['markdown']}")


CONFIG_HELP = ("a TOML or YAML file of these options (keys: the option names, dashes or underscores); "
               "options on the command line override it")


def register(sub) -> None:
    """`tinydistill reproduce {table2,table3,curves,teachers}`."""
    p = sub.add_parser("reproduce", help="the paper's Tables 2 and 3, F1 curves and a teacher table, resumable",
                       description="Run the paper's experiments (its T-train sizes, several seeds) and write JSON and "
                       "Markdown with the paper's figures beside ours. Rerun the same command to resume.")
    global_options(p)
    which = p.add_subparsers(dest="table", required=True, metavar="WHAT")
    for name, text in (("table2", "every dataset at the paper's label count: teacher, students, peers, speed"),
                       ("table3", "SST-2 with few and many labels, with and without distillation"),
                       ("curves", "F1 against labels and against latency, as PNG (needs matplotlib)"),
                       ("teachers", "teachers alone at the paper's label counts: score, training time, speed; "
                                    "several teachers and recipes side by side")):
        q = which.add_parser(name, help=text, description=text)
        if name != "table3":
            q.add_argument("--datasets", type=csv_list, help="comma list of paper datasets (default: %(default)s)",
                           default=",".join(CURVE_DATASETS if name == "curves" else DATASETS))
        if name == "table2":
            q.add_argument("--merge", nargs="+", metavar="TABLE2_JSON",
                           help="run nothing: assemble the table from the table2.json files that separate calls "
                           "wrote (e.g. one dataset run later or elsewhere), their runs of --datasets in that order, "
                           "into --out; the files must share teacher, recipe, students, peers and sizes")
        if name in ("table2", "curves"):
            q.add_argument("--peers", type=csv_list, default=",".join(Setup.peers),
                           help="comma list of fasttext, model2vec, setfit, tfidf-lr, or '' (default: %(default)s)")
        if name in ("table3", "curves"):
            q.add_argument("--sizes", type=_ints, help="labels per run (default: %(default)s)", default=",".join(
                map(str, TABLE3_SIZES if name == "table3" else CURVE_SIZES)))
        q.add_argument("--seeds", type=_seeds, default=",".join(map(str, Setup.seeds)), help="comma list; DATASET=A+B "
                       "entries choose per dataset, e.g. 0,1,2,imdb=0 (default: %(default)s)")
        if name == "teachers":
            q.add_argument("--teacher", default=Setup.teacher, help="comma list of teachers to compare: minilm, "
                           "mpnet-base, a folder or a hub id (default: %(default)s)")
            q.add_argument("--recipes", type=csv_list, default=RunConfig.recipe, help="comma list of recipes to "
                           "compare: strong, strong-early-stop, ensemble, self-train, contrastive, paper (default: "
                           "%(default)s)")
            q.add_argument("--max-length", type=number("int", minimum=2),
                           help="teacher tokens per text, longer texts cut (default: the "
                           "recipe's, 128); runs go to their own folders and table rows")
        else:
            q.add_argument("--teacher", default=Setup.teacher, help="minilm or mpnet-base; DATASET=NAME entries "
                           "choose per dataset, e.g. mpnet-base,imdb=minilm (default: %(default)s)")
            q.add_argument("--transfer-scale", type=number(above=0, maximum=1),
                           help="use this fraction of the paper's S-train (e.g. "
                           "0.05) where all of it does not fit the time; the table says so")
            q.add_argument("--transfer-max", type=SIZE, help="at most this many transfer texts a dataset (after "
                           "--transfer-scale); the table says so")
            q.add_argument("--teacher-epochs", type=POSITIVE,
                           help="override the recipe's epochs (its minimum step count "
                           "still holds), e.g. 3 for the paper's 6920-label SST-2 teacher")
            q.add_argument("--augment", default=Setup.augment, choices=["glove", "tang"],
                           help="how SST-2/CoLA pools grow")
            q.add_argument("--students", type=csv_list, default=",".join(Setup.students),
                           help=f"comma list of {', '.join(STUDENTS)}")
            q.add_argument("--speed-teacher", help="a 109.5M encoder to time beside the students when the teacher "
                           "is smaller: mpnet-base (after `tinydistill fetch-teacher mpnet-base`)")
        q.add_argument("--test-size", type=SIZE, help="score on one stratified sample of this many texts of each test "
                       "split (IMDB's has 25,000); the table says so")
        q.add_argument("--data-dir", help="folder laid out like shared/data (default: $TINYDISTILL_DATA)")
        q.add_argument("--out", default=Setup.out, help="runs, pools and tables (default: %(default)s)")
        q.add_argument("--config", help=CONFIG_HELP)
        device_options(q, labelling=name != "teachers")
        global_options(q)
        q.set_defaults(func=cmd_reproduce)
