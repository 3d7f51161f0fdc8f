"""The paper's Tables 2 and 3, F1 curves and a teacher table: `tinydistill reproduce {table2,table3,curves,teachers}`.

Each table runs the experiments of `tinydistill.reproduce` (a rerun resumes them) and writes `<out>/<table>.json`
and `.md`, our mean ± std over seeds beside the paper's figure; the curves are also drawn as PNG (matplotlib).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from tinydistill.errors import TinyDistillError
from tinydistill.reproduce import DATASETS, Setup, _full, _spec, _stat, run_one, summarize, teacher_run

# The paper's figures (its Tables 2 and 3): F1 x 100, MCC x 100 for CoLA, with a BERT-base teacher.
PAPER: dict[str, Any] = {
    "table2": {"teacher": {"agnews": 87.3, "emotion": 82.0, "imdb": 88.3, "sst2": 83.5, "cola": 56.0},
               "cbow": {"agnews": 86.3, "emotion": 82.0, "imdb": 87.6, "sst2": 79.1, "cola": 10.0},
               "bilstm": {"agnews": 86.4, "emotion": 81.8, "imdb": 85.6, "sst2": 80.7, "cola": 10.0}},
    "table2_ratios": {"teacher": {"compression": 1, "speedup": 1}, "cbow": {"compression": 1375, "speedup": 574},
                      "bilstm": {"compression": 160, "speedup": 40}},
    "table3_sizes": (200, 6920),  # SST-2 labels, low and high resource
    "table3": {"teacher": (83.5, 91.0), "cbow": (79.1, 82.0), "bilstm": (80.7, 86.1), "cbow-nods": (62.8, 81.2),
               "bilstm-nods": (63.1, 78.8)},
}
PAPER_NOTE = ("Paper: a BERT-base teacher, SST-2/CoLA transfer sets of 1M augmented sentences, speed on a Xeon "
              "2.3 GHz with TensorFlow 2.2.")
NAMES = {"cbow": "CBoW-FFN", "bilstm": "BiLSTM", "cnn": "CNN", "fasttext": "fastText", "setfit": "SetFit (MiniLM)",
         "tfidf-lr": "TF-IDF + LR"}
TITLES = {"agnews": "AGNews", "emotion": "Emotion", "imdb": "IMDB", "sst2": "SST-2", "cola": "CoLA"}


# --------------------------------------------------------------------------------------------- tables


def table2(datasets: Sequence[str] = DATASETS, setup: Setup | None = None) -> dict:
    """Table 2: teacher, students and peers at each dataset's paper T-train size, F1 (MCC for CoLA) beside the
    paper's, with compression and speedups; writes `<out>/table2.json` and `table2.md`; returns the JSON."""
    s, started = setup or Setup(), time.time()
    runs = [run_one(ds, _spec(ds).labeled, seed, s, s.peers) for ds in datasets for seed in s.seeds_for(ds)]
    summary = summarize(runs)
    by = {(r["dataset"], r["model"]): r for r in summary}
    teachers = {r["dataset"]: Path(r["teacher"]).name for r in runs}
    metric = {ds: "MCC" if _spec(ds).metric == "mcc" else "F1" for ds in datasets}
    head = ["model", *[h for ds in datasets for h in (f"{TITLES.get(ds, ds)} {metric[ds]}", "acc", "paper",
                                                       "agree transfer", "agree test")],
            "params", "compression", "paper", "texts/s", "speedup", "batch-1 ms", "speedup b1", "paper"]
    lines = ["# Table 2: F1 x 100 (MCC for CoLA), ours as mean ± std over seeds beside the paper's; compression "
             "and speedups against the 109.5M teacher", "", _row(head), _row(["---"] * len(head)),
             _row(["teacher used", *[x for ds in datasets for x in (teachers[ds], "", "BERT-base", "", "")],
                   *[""] * 8])]
    for model in _order(summary, s):
        cells = [_name(model)]
        for ds in datasets:
            r = by.get((ds, model))
            cells += [_pm(r, "headline"), _pm(r, "accuracy"), _paper(PAPER["table2"].get(model, {}).get(ds)),
                      _pm(r, "agree_transfer"), _pm(r, "agree_test")]
        every = summarize([{"dataset": "", "labeled": 0, "records": [x for r in runs for x in r["records"]
                                                                     if x["model"] == model]}])[0]
        ratios = PAPER["table2_ratios"].get(model, {})
        lines.append(_row([*cells, _count(every["params"]["mean"]), _pm(every, "compression", 1, 0, "x"),
                           _paper(ratios.get("compression"), "x"), _pm(every, "texts_per_s", 1, 0),
                           _pm(every, "speedup", 1, 1, "x"), _pm(every, "latency_ms", 1, 2),
                           _pm(every, "speedup_batch1", 1, 1, "x"), _paper(ratios.get("speedup"), "x")]))
    lines += ["", "Params, compression and speed: mean ± std over every dataset and seed. Agree transfer / test: % "
              "of the transfer texts a student trained on (at most 10,000 of them) and of the test texts on which it "
              f"gives the teacher's label ('-': runs recorded before this was measured). {PAPER_NOTE}"]
    return _write(s, "table2", {"datasets": list(datasets), "summary": summary, "runs": runs}, lines, started)


def table3(sizes: Sequence[int] = PAPER["table3_sizes"], setup: Setup | None = None) -> dict:
    """Table 3: SST-2 with few and many labels (the paper's 200 and 6920), students with and without
    distillation; writes `<out>/table3.json` and `table3.md`; returns the JSON."""
    s, started = setup or Setup(), time.time()
    runs = [run_one("sst2", n, seed, s, speed=False) for n in sizes for seed in s.seeds_for("sst2")]
    summary = summarize(runs)
    by = {(r["labeled"], r["model"]): r for r in summary}
    paper_sizes = list(PAPER["table3_sizes"]) + [None] * len(sizes)
    head = ["model", *[h for n, p in zip(sizes, paper_sizes) for h in (f"ours, {n} labels", f"paper, {p} labels")]]
    lines = ["# Table 3: SST-2 F1 x 100 with few and many labels; ours as mean ± std over seeds beside the paper's",
             "", _row(head), _row(["---"] * len(head))]
    for model in _order(summary, s):
        paper = list(PAPER["table3"].get(model, ())) + [None] * len(sizes)
        lines.append(_row([_name(model), *[x for n, p in zip(sizes, paper)
                                           for x in (_pm(by.get((n, model)), "headline"), _paper(p))]]))
    lines += ["", f"NoDs: the student trained on the labels alone. {PAPER_NOTE}"]
    return _write(s, "table3", {"sizes": list(sizes), "summary": summary, "runs": runs}, lines, started)


def curves(datasets: Sequence[str] = ("sst2", "agnews"), sizes: Sequence[int] = (50, 100, 200, 500, 1000),
           setup: Setup | None = None) -> dict:
    """F1 against T-train size for teacher, students and NoDs twins (`curves_<dataset>.png`), and F1 against
    batch-1 latency for every model and peer (`scatter.png`, at the paper's size if among `sizes`, else the
    largest), linked from `<out>/curves.md`; returns the JSON written to `curves.json`."""
    s, started = setup or Setup(), time.time()
    at = {ds: _spec(ds).labeled if _spec(ds).labeled in sizes else max(sizes) for ds in datasets}
    runs = [run_one(ds, n, seed, s, s.peers if n == at[ds] else (), speed=n == at[ds])
            for ds in datasets for n in sizes for seed in s.seeds_for(ds)]
    summary = summarize(runs)
    Path(s.out).mkdir(parents=True, exist_ok=True)
    lines = ["# F1 x 100 (MCC for CoLA) against labelled examples, mean ± std over seeds", ""]
    for ds in datasets:
        by = {(r["labeled"], r["model"]): r for r in summary if r["dataset"] == ds}
        models = [m for m in _order(summary, s) if m == "teacher" or m.removesuffix("-nods") in s.students]
        _plot_curves([r for r in summary if r["dataset"] == ds and r["model"] in models], sizes,
                     f"{TITLES.get(ds, ds)}: test score against labels", Path(s.out) / f"curves_{ds}.png")
        lines += [f"## {TITLES.get(ds, ds)}", "", f"![{ds} curves](curves_{ds}.png)", "",
                  _row(["model", *[f"{n} labels" for n in sizes]]), _row(["---"] * (len(sizes) + 1)),
                  *[_row([_name(m), *[_pm(by.get((n, m)), "headline") for n in sizes]]) for m in models], ""]
    points = [r for r in summary if r["labeled"] == at[r["dataset"]] and "latency_ms" in r]
    _plot_scatter(points, datasets, Path(s.out) / "scatter.png")
    lines += ["## Score against CPU latency (batch 1)", "", "![F1 against latency](scatter.png)", "",
              _row(["dataset", "labels", "model", "score", "batch-1 ms"]), _row(["---"] * 5),
              *[_row([r["dataset"], str(r["labeled"]), _name(r["model"]), _pm(r, "headline"),
                      _pm(r, "latency_ms", 1, 2)]) for r in points]]
    plots = [f"curves_{ds}.png" for ds in datasets] + ["scatter.png"]
    return _write(s, "curves", {"datasets": list(datasets), "sizes": list(sizes), "plots": plots,
                                "summary": summary, "runs": runs}, lines, started)


def teachers(datasets: Sequence[str] = DATASETS, setup: Setup | None = None, names: Sequence[str] = (),
             recipes: Sequence[str] = ("strong",)) -> dict:
    """Issue 6's table: each teacher (`names`, default the setup's) fine-tuned with each recipe at every dataset's
    paper T-train size for every seed, with its test score beside the paper's BERT-base, training time and steps,
    held-out score (recipes that hold labels out) and batch-64 throughput; writes `<out>/teachers.json` and `.md`."""
    from tinydistill.finetune import Recipe

    s, started = setup or Setup(), time.time()
    runs = [teacher_run(ds, _spec(ds).labeled, seed, name, recipe, s) for ds in datasets
            for name in (names or [s.teacher_for(ds)]) for recipe in recipes for seed in s.seeds_for(ds)]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in runs:  # records written before `max_length` was kept were all at the recipes' default
        groups[(r["dataset"], r["teacher"], r["recipe"], r.get("max_length", Recipe.max_length))].append(r)
    summary = [{"dataset": ds, "labeled": rs[0]["labeled"], "teacher": t, "recipe": rc, "max_length": n,
                "runs": len(rs), "params": rs[0]["params"], **{k: _stat([r[k] for r in rs if r[k] is not None])
                                              for k in ("headline", "accuracy", "seconds", "steps", "texts_per_s")},
                "held_out": _stat([r["held_out"] for r in rs]) if rs[0]["held_out"] is not None else None}
               for (ds, t, rc, n), rs in groups.items()]
    head = ["dataset", "labels", "teacher", "params", "recipe", "F1 (MCC for CoLA)", "paper BERT-base", "acc",
            "train s", "steps", "held-out acc", "texts/s, batch 64"]
    lines = ["# Teachers: test F1 x 100 (MCC for CoLA), mean ± std over seeds, beside the paper's BERT-base", "",
             _row(head), _row(["---"] * len(head))]
    for r in summary:
        recipe = r["recipe"] + ("" if r["max_length"] == Recipe.max_length else f", {r['max_length']} tokens")
        lines.append(_row([TITLES.get(r["dataset"], r["dataset"]), str(r["labeled"]), r["teacher"],
                           _count(r["params"]), recipe, _pm(r, "headline"),
                           _paper(PAPER["table2"]["teacher"].get(r["dataset"])), _pm(r, "accuracy"),
                           _pm(r, "seconds", 1, 0), _pm(r, "steps", 1, 0), _pm(r, "held_out"),
                           _pm(r, "texts_per_s", 1, 1)]))
    threads = sorted({r["score_threads"] for r in runs if "score_threads" in r})
    on = (f"{threads[0]} torch thread(s)" if len(threads) == 1 and all("score_threads" in r for r in runs)
          else "the torch threads of the call that scored each run (`score_threads` in its JSON record, where kept)")
    lines += ["", "Train s: fine-tuning wall time, as recorded when each teacher was trained (its teacher.json, which "
              "also says on how many torch threads). Texts/s: test texts through the fine-tuned teacher in batches "
              f"of 64, tokenisation included, on {on}."]
    return _write(s, "teachers", {"datasets": list(datasets), "summary": summary, "runs": runs}, lines, started)


def _order(summary: list[dict], s: Setup) -> list[str]:
    present = {r["model"] for r in summary}
    wanted = ["teacher", *s.students, *[f"{x}-nods" for x in s.students], *s.peers, *[f"{p}-hard" for p in s.peers]]
    return [m for m in wanted if m in present] + sorted(present - set(wanted))


def _name(model: str) -> str:
    for suffix, words in (("-nods", " NoDs"), ("-hard", " on teacher labels")):
        if model.endswith(suffix):
            return _name(model.removesuffix(suffix)) + words
    return NAMES.get(model, model)


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _pm(row: dict | None, key: str, scale: float = 100.0, digits: int = 1, prefix: str = "") -> str:
    if not row or row.get(key) is None:
        return "-"
    mean = f"{prefix}{scale * row[key]['mean']:,.{digits}f}"
    one = len(row[key]["values"]) < 2  # one seed: no spread to show
    return mean if one else f"{mean} ± {scale * row[key]['std']:,.{digits}f}"


def _paper(value: float | None, prefix: str = "") -> str:
    return "-" if value is None else f"{prefix}{value:g}"


def _count(n: float) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}K" if n >= 1e3 else f"{n:.0f}"


def _write(s: Setup, name: str, result: dict, lines: list[str], started: float) -> dict:
    """Add the footer (every size used, seeds, machine, timing), write `<out>/<name>.json` and `.md`."""
    import torch

    from tinydistill.pipeline import RunConfig, write_json

    runs, out, seen = result["runs"], Path(s.out), set()
    lines += ["", f"Sizes used (labelled{'' if name == 'teachers' else ' / transfer'} / test texts):"]
    for r in runs:
        if (r["dataset"], r["labeled"]) not in seen:
            seen.add((r["dataset"], r["labeled"]))
            z, ref = r["sizes"], r["reference"]
            paper_size = _spec(r["dataset"]).transfer
            scale = (f", scaled down to {s.transfer_size(r['dataset']):,} to fit this machine's time"
                     if s.transfer_size(r["dataset"]) < paper_size else "")
            speed = "" if ref is None else (f"; speed against {Path(ref['name']).name} ({_count(ref['params'])} "
                                            f"params, {ref['timed']}{'' if _full(ref) else ', NOT the 109.5M one'})")
            transfer = (f" / {z['transfer']:,} (paper S-train {paper_size:,}{scale})"
                        if "transfer" in z else "")
            teacher = "" if name == "teachers" else f"; teacher {Path(r['teacher']).name}"  # rows name theirs
            lines.append(f"- {r['dataset']}, {r['labeled']} labels: {z['labeled']:,}{transfer} / {z['test']:,} "
                         f"({r['test_split']}){teacher}{speed}")
    machine = {"processor": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "torch_threads": torch.get_num_threads(), "python": platform.python_version()}
    tuning = sum(json.loads((Path(r["run"]) / "teacher" / "teacher.json").read_text()).get("training", {})
                 .get("seconds", 0) for r in runs)
    seeds = "; ".join(f"{ds} {', '.join(map(str, s.seeds_for(ds)))}"
                      for ds in dict.fromkeys(r["dataset"] for r in runs))
    lines.append(f"- seeds: {seeds} (mean ± sample std); machine {machine['processor']}, "
                 f"{machine['cores']} cores; this call {time.time() - started:,.0f} s (a rerun reuses finished "
                 f"work), teacher fine-tuning {tuning:,.0f} s in all")
    base = s.base or RunConfig()
    if name != "teachers":
        lines.append(f"- teacher recipe: {base.recipe}" + (f", {base.teacher_epochs:g} epochs (or its minimum steps)"
                                                           if base.teacher_epochs else ""))
    if any(r["reference"] for r in runs):
        lines.append("- speed: each model timed in one process with its reference, batched (teacher-size models 64 "
                     "a batch, students and peers 512) and at batch 1, tokenising included; students as deployed, "
                     "through the numpy runtime on one thread. A reference timed as a base encoder with a fresh "
                     "head costs what a fine-tuned one does. Compression is against 109.5M parameters.")
    if any(r["reference"] and not _full(r["reference"]) for r in runs):
        lines.append("- `--speed-teacher mpnet-base` (after `tinydistill fetch-teacher mpnet-base`) also times the "
                     "109.5M teacher beside the students.")
    result = {"table": name, **result, "paper": PAPER, "setup": asdict(s), "machine": machine,
              "seconds": round(time.time() - started, 1), "json": str(out / f"{name}.json"),
              "markdown": str(out / f"{name}.md")}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{name}.json", result)
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    return result


# ---------------------------------------------------------------------------------------------- plots


def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise TinyDistillError("the curves need matplotlib: pip install 'matplotlib>=3.8'") from None
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)  # the Agg backend, without pyplot's global state
    return fig


def _plot_curves(rows: list[dict], sizes: Sequence[int], title: str, path: Path) -> None:
    fig = _figure(6, 4)
    ax = fig.subplots()
    for model in dict.fromkeys(r["model"] for r in rows):
        points = sorted((r["labeled"], r["headline"]) for r in rows if r["model"] == model)
        ax.errorbar([n for n, _ in points], [100 * h["mean"] for _, h in points], [100 * h["std"] for _, h in points],
                    marker="o", capsize=3, label=_name(model), linestyle="--" if model.endswith("-nods") else "-")
    ax.set_xscale("log")
    ax.set_xticks(list(sizes), [str(n) for n in sizes])
    ax.minorticks_off()
    ax.set(xlabel="labelled examples (T-train)", ylabel="test F1 x 100", title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def _plot_scatter(points: list[dict], datasets: Sequence[str], path: Path) -> None:
    fig = _figure(5 * len(datasets), 4)
    for ax, ds in zip(np.atleast_1d(fig.subplots(1, len(datasets))), datasets):
        for r in (r for r in points if r["dataset"] == ds):
            x, y = r["latency_ms"]["mean"], 100 * r["headline"]["mean"]
            ax.scatter([x], [y], marker="s" if r["model"] == "teacher" else "o")
            ax.annotate(_name(r["model"]), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.tick_params(axis="x", which="minor", labelbottom=False)
        ax.set(xlabel="CPU latency, batch 1 (ms)", ylabel="test F1 x 100", title=TITLES.get(ds, ds))
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110, bbox_inches="tight")


# ------------------------------------------------------------------------------------------------ CLI


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _ints(value: str) -> list[int]:
    return [int(v) for v in _csv(value)]


def _seeds(value: str) -> dict[str | None, tuple[int, ...]]:
    """`0,1,2,imdb=0` -> {None: (0, 1, 2), "imdb": (0,)}: seeds for every dataset, then per-dataset ones."""
    every = [v for v in _csv(value) if "=" not in v]
    by: dict[str | None, tuple[int, ...]] = {None: tuple(int(v) for v in every) or (0,)}
    for item in (v for v in _csv(value) if "=" in v):
        ds, seeds = item.split("=", 1)
        by[ds] = tuple(int(v) for v in seeds.split("+"))
    return by


def setup_from_args(a) -> Setup:
    """A `Setup` from `tinydistill reproduce` options; `--teacher minilm,imdb=mpnet-base` picks per dataset."""
    from tinydistill.pipeline import RunConfig

    plain = [t for t in _csv(a.teacher) if "=" not in t]
    epochs, tokens = getattr(a, "teacher_epochs", None), getattr(a, "max_length", None)
    device, precision = getattr(a, "device", "auto"), getattr(a, "label_precision", "fp32")
    return Setup(seeds=a.seeds[None], seeds_by={k: v for k, v in a.seeds.items() if k is not None},
                 teacher=plain[-1] if plain else "minilm", transfer_scale=getattr(a, "transfer_scale", None),
                 transfer_max=getattr(a, "transfer_max", None), test_size=a.test_size,
                 base=RunConfig(teacher_epochs=epochs, max_length=tokens, device=device, label_precision=precision)
                 if epochs or tokens or device != "auto" or precision != "fp32" else None,
                 teachers=dict(t.split("=", 1) for t in _csv(a.teacher) if "=" in t),
                 augment=getattr(a, "augment", "glove"), out=a.out, data_dir=a.data_dir,
                 peers=tuple(getattr(a, "peers", ())), students=tuple(getattr(a, "students", ())),
                 speed_teacher=getattr(a, "speed_teacher", None), progress=not getattr(a, "quiet", False))


def _command(a) -> None:
    from tinydistill.device import resolve_device

    resolve_device(a.device)  # a device torch does not see fails before any run starts
    s = setup_from_args(a)
    if a.table == "teachers":
        result = teachers(a.datasets, s, [t for t in _csv(a.teacher) if "=" not in t], a.recipes)
    else:
        result = (table2(a.datasets, s) if a.table == "table2" else table3(a.sizes, s) if a.table == "table3"
                  else curves(a.datasets, a.sizes, s))
    print(Path(result["markdown"]).read_text())
    print(f"results: {result['json']}\ntable: {result['markdown']}")


CONFIG_HELP = ("a TOML or YAML file of these options (keys: the option names, dashes or underscores); "
               "options on the command line override it")


def register_cli(sub) -> None:
    """`tinydistill reproduce {table2,table3,curves,teachers}` (called by tinydistill.cli)."""
    from tinydistill.cli import POSITIVE, SIZE, device_options, number

    p = sub.add_parser("reproduce", help="the paper's Tables 2 and 3, F1 curves and a teacher table, resumable",
                       description="Run the paper's experiments (its T-train sizes, several seeds) and write JSON and "
                       "Markdown with the paper's figures beside ours. Rerun the same command to resume.")
    which = p.add_subparsers(dest="table", required=True, metavar="WHAT")
    for name, text in (("table2", "every dataset at the paper's label count: teacher, students, peers, speed"),
                       ("table3", "SST-2 with few and many labels, with and without distillation"),
                       ("curves", "F1 against labels and against latency, as PNG (needs matplotlib)"),
                       ("teachers", "teachers alone at the paper's label counts: score, training time, speed; "
                                    "several teachers and recipes side by side")):
        q = which.add_parser(name, help=text, description=text)
        if name != "table3":
            q.add_argument("--datasets", type=_csv, help="comma list of paper datasets (default: %(default)s)",
                           default=",".join(("sst2", "agnews") if name == "curves" else DATASETS))
        if name in ("table2", "curves"):
            q.add_argument("--peers", type=_csv, default="fasttext,model2vec,setfit",
                           help="comma list of fasttext, model2vec, setfit, tfidf-lr, or '' (default: %(default)s)")
        if name in ("table3", "curves"):
            q.add_argument("--sizes", type=_ints, help="labels per run (default: %(default)s)", default=",".join(
                map(str, PAPER["table3_sizes"] if name == "table3" else (50, 100, 200, 500, 1000))))
        q.add_argument("--seeds", type=_seeds, default="0,1,2", help="comma list; DATASET=A+B entries choose per "
                       "dataset, e.g. 0,1,2,imdb=0 (default: %(default)s)")
        if name == "teachers":
            q.add_argument("--teacher", default="minilm", help="comma list of teachers to compare: minilm, "
                           "mpnet-base, a folder or a hub id (default: %(default)s)")
            q.add_argument("--recipes", type=_csv, default="strong", help="comma list of recipes to compare: strong, "
                           "strong-early-stop, ensemble, self-train, contrastive, paper (default: %(default)s)")
            q.add_argument("--max-length", type=number("int", minimum=2),
                           help="teacher tokens per text, longer texts cut (default: the "
                           "recipe's, 128); runs go to their own folders and table rows")
        else:
            q.add_argument("--teacher", default="minilm", help="minilm or mpnet-base; DATASET=NAME entries choose "
                           "per dataset, e.g. mpnet-base,imdb=minilm (default: %(default)s)")
            q.add_argument("--transfer-scale", type=number(above=0, maximum=1),
                           help="use this fraction of the paper's S-train (e.g. "
                           "0.05) where all of it does not fit the time; the table says so")
            q.add_argument("--transfer-max", type=SIZE, help="at most this many transfer texts a dataset (after "
                           "--transfer-scale); the table says so")
            q.add_argument("--teacher-epochs", type=POSITIVE,
                           help="override the recipe's epochs (its minimum step count "
                           "still holds), e.g. 3 for the paper's 6920-label SST-2 teacher")
            q.add_argument("--augment", default="glove", choices=["glove", "tang"], help="how SST-2/CoLA pools grow")
            q.add_argument("--students", type=_csv, default="cbow,bilstm", help="comma list of cbow, bilstm, cnn")
            q.add_argument("--speed-teacher", help="a 109.5M encoder to time beside the students when the teacher "
                           "is smaller: mpnet-base (after `tinydistill fetch-teacher mpnet-base`)")
        q.add_argument("--test-size", type=SIZE, help="score on one stratified sample of this many texts of each test "
                       "split (IMDB's has 25,000); the table says so")
        q.add_argument("--data-dir", help="folder laid out like shared/data (default: $TINYDISTILL_DATA)")
        q.add_argument("--out", default="runs/reproduce", help="runs, pools and tables (default: %(default)s)")
        q.add_argument("--config", help=CONFIG_HELP)
        device_options(q, labelling=name != "teachers")
        q.set_defaults(func=_command)
