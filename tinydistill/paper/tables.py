"""The paper's Tables 2 and 3, F1 curves and a teacher table: `tinydistill reproduce {table2,table3,curves,teachers}`.

Each table runs the experiments of `tinydistill.paper.reproduce` (a rerun resumes them) and writes
`<out>/<table>.json` and `.md`, our mean ± std over seeds beside the paper's figure; the curves are also drawn as PNG
(`tinydistill.paper.plots`, matplotlib).
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

import torch

from tinydistill.config import RunConfig
from tinydistill.errors import TinyDistillError
from tinydistill.finetune import Recipe
from tinydistill.folders import write_json
from tinydistill.paper.plots import plot_curves, plot_scatter
from tinydistill.paper.reproduce import is_full_size, mean_std, run_one, summarize, teacher_run
from tinydistill.paper.setup import (
    CURVE_DATASETS,
    CURVE_SIZES,
    DATASETS,
    TABLE3_SIZES,
    TITLES,
    Setup,
    dataset_spec,
    model_name,
)

# The paper's figures (its Tables 2 and 3): F1 x 100, MCC x 100 for CoLA, with a BERT-base teacher.
PAPER: dict[str, Any] = {
    "table2": {"teacher": {"agnews": 87.3, "emotion": 82.0, "imdb": 88.3, "sst2": 83.5, "cola": 56.0},
               "cbow": {"agnews": 86.3, "emotion": 82.0, "imdb": 87.6, "sst2": 79.1, "cola": 10.0},
               "bilstm": {"agnews": 86.4, "emotion": 81.8, "imdb": 85.6, "sst2": 80.7, "cola": 10.0}},
    "table2_ratios": {"teacher": {"compression": 1, "speedup": 1}, "cbow": {"compression": 1375, "speedup": 574},
                      "bilstm": {"compression": 160, "speedup": 40}},
    "table3_sizes": TABLE3_SIZES,
    "table3": {"teacher": (83.5, 91.0), "cbow": (79.1, 82.0), "bilstm": (80.7, 86.1), "cbow-nods": (62.8, 81.2),
               "bilstm-nods": (63.1, 78.8)},
}
AGREE_NOTE = ("Agree transfer / test: % of the transfer texts a student trained on (at most 10,000 of them) and of "
              "the test texts on which it gives the teacher's label ('-': runs recorded before this was measured).")
PAPER_NOTE = ("Paper: a BERT-base teacher, SST-2/CoLA transfer sets of 1M augmented sentences, speed on a Xeon "
              "2.3 GHz with TensorFlow 2.2.")
# --------------------------------------------------------------------------------------------- tables


def table2(datasets: Sequence[str] = DATASETS, setup: Setup | None = None) -> dict:
    """Table 2: teacher, students and peers at each dataset's paper T-train size, F1 (MCC for CoLA) beside the
    paper's, with compression and speedups; writes `<out>/table2.json` and `table2.md`; returns the JSON."""
    s, started = setup or Setup(), time.time()
    runs = [run_one(ds, dataset_spec(ds).labeled, seed, s, s.peers) for ds in datasets for seed in s.seeds_for(ds)]
    return _table2(runs, datasets, s, started)


# what saved tables must share to be merged into one: the setup a row's figures depend on
SAME_SETUP = ("teacher", "teachers", "transfer_scale", "transfer_max", "test_size", "augment", "students", "peers")
SAME_BASE = ("recipe", "teacher_epochs", "teacher_lr", "max_length", "loss", "glove", "label_precision", "nods")


def merge_table2(paths: Sequence[str | Path], datasets: Sequence[str] = DATASETS, out: str | None = None) -> dict:
    """Table 2 assembled, without running anything, from `table2.json` files that separate calls of
    `reproduce table2` wrote (a dataset run later, or on another machine): their runs of `datasets`, in that
    order. The files must share the setup the figures depend on (teacher, recipe, students, peers, transfer and
    test sizes) and hold different runs; writes `<out>/table2.json` and `.md` like `table2`, the footer naming each
    file with its own wall time and teacher fine-tuning time."""
    started, sources = time.time(), []
    target = Path(out or Setup.out) / "table2.json"
    for path in paths:
        if Path(path).resolve() == target.resolve():
            raise TinyDistillError(f"{path}: --out would write the merged table over this file; choose another --out")
        try:
            saved = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise TinyDistillError(f"{path}: not a readable table2.json ({e})") from e
        if not (isinstance(saved, dict) and saved.get("table") == "table2" and isinstance(saved.get("runs"), list)
                and isinstance(saved.get("setup"), dict) and "seconds" in saved):
            raise TinyDistillError(f"{path}: expected a table2.json written by `tinydistill reproduce table2`")
        sources.append({"path": str(path), **saved})
    first = sources[0]
    for src in sources[1:]:
        for key in SAME_SETUP:
            if src["setup"].get(key) != first["setup"].get(key):
                raise TinyDistillError(f"{src['path']}: made with {key} {src['setup'].get(key)!r}, {first['path']} "
                                       f"with {first['setup'].get(key)!r}; only tables of one setup can be merged")
        for key in SAME_BASE:
            mine, theirs = ((x["setup"].get("base") or {}).get(key) for x in (src, first))
            if mine != theirs:
                raise TinyDistillError(f"{src['path']}: made with {key} {mine!r}, {first['path']} with {theirs!r}; "
                                       f"only tables of one setup can be merged")
    runs: list[dict] = []
    seen: dict[tuple, str] = {}
    for src in sources:
        for r in src["runs"]:
            at = (r["dataset"], r["labeled"], r["seed"])
            if at in seen:
                raise TinyDistillError(f"{src['path']}: {r['dataset']}/{r['labeled']} seed {r['seed']} is also in "
                                       f"{seen[at]}; merge tables of different runs")
            seen[at] = src["path"]
            runs.append(r)
    runs = [r for ds in datasets for r in runs if r["dataset"] == ds]
    if not runs:
        raise TinyDistillError(f"{', '.join(map(str, paths))}: no run of {', '.join(datasets)}")
    s = _saved_setup(first["setup"], out)
    held = list(dict.fromkeys(r["dataset"] for r in runs))  # the datasets asked for that the files have
    s.seeds_by = {ds: tuple(sorted({r["seed"] for r in runs if r["dataset"] == ds})) for ds in held}
    kept = [src for src in sources if any(r["dataset"] in held for r in src["runs"])]
    return _table2(runs, held, s, started, kept)


def _saved_setup(saved: dict, out: str | None) -> Setup:
    """The `Setup` a saved table recorded (fields this version does not know are dropped)."""
    plain: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()
                             if k in Setup.__dataclass_fields__ and k != "base"}
    base = saved.get("base")
    s = Setup(**plain)
    s.base = RunConfig(**{k: v for k, v in base.items() if k in RunConfig.__dataclass_fields__}) if base else None
    s.out = out or s.out
    return s


def _table2(runs: list[dict], datasets: Sequence[str], s: Setup, started: float,
            sources: list[dict] | None = None) -> dict:
    summary = summarize(runs)
    by = {(r["dataset"], r["model"]): r for r in summary}
    teachers = {r["dataset"]: Path(r["teacher"]).name for r in runs}
    metric = {ds: "MCC" if dataset_spec(ds).metric == "mcc" else "F1" for ds in datasets}
    head = ["model", *[h for ds in datasets for h in (f"{TITLES.get(ds, ds)} {metric[ds]}", "acc", "paper",
                                                       "agree transfer", "agree test")],
            "params", "compression", "paper", "texts/s", "speedup", "batch-1 ms", "speedup b1", "paper"]
    lines = ["# Table 2: F1 x 100 (MCC for CoLA), ours as mean ± std over seeds beside the paper's; compression "
             "and speedups against the 109.5M teacher", "", _row(head), _row(["---"] * len(head)),
             _row(["teacher used", *[x for ds in datasets for x in (teachers[ds], "", "BERT-base", "", "")],
                   *[""] * 8])]
    for model in _order(summary, s):
        cells = [model_name(model)]
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
    lines += ["", f"Params, compression and speed: mean ± std over every dataset and seed. {AGREE_NOTE} {PAPER_NOTE}"]
    return _write(s, "table2", {"datasets": list(datasets), "summary": summary, "runs": runs}, lines, started,
                  sources)


def table3(sizes: Sequence[int] = PAPER["table3_sizes"], setup: Setup | None = None) -> dict:
    """Table 3: SST-2 with few and many labels (the paper's 200 and 6920), students with and without
    distillation; writes `<out>/table3.json` and `table3.md`; returns the JSON."""
    s, started = setup or Setup(), time.time()
    runs = [run_one("sst2", n, seed, s, speed=False) for n in sizes for seed in s.seeds_for("sst2")]
    summary = summarize(runs)
    by = {(r["labeled"], r["model"]): r for r in summary}
    paper_sizes = list(PAPER["table3_sizes"]) + [None] * len(sizes)
    head = ["model", *[h for n, p in zip(sizes, paper_sizes)
                       for h in (f"ours, {n} labels", f"paper, {p} labels", "agree transfer", "agree test")]]
    lines = ["# Table 3: SST-2 F1 x 100 with few and many labels; ours as mean ± std over seeds beside the paper's",
             "", _row(head), _row(["---"] * len(head))]
    for model in _order(summary, s):
        paper = list(PAPER["table3"].get(model, ())) + [None] * len(sizes)
        lines.append(_row([model_name(model), *[x for n, p in zip(sizes, paper) for x in (
            _pm(by.get((n, model)), "headline"), _paper(p), _pm(by.get((n, model)), "agree_transfer"),
            _pm(by.get((n, model)), "agree_test"))]]))
    lines += ["", f"NoDs: the student trained on the labels alone. {AGREE_NOTE} {PAPER_NOTE}"]
    return _write(s, "table3", {"sizes": list(sizes), "summary": summary, "runs": runs}, lines, started)


def curves(datasets: Sequence[str] = CURVE_DATASETS, sizes: Sequence[int] = CURVE_SIZES,
           setup: Setup | None = None) -> dict:
    """F1 against T-train size for teacher, students and NoDs twins (`curves_<dataset>.png`), and F1 against
    batch-1 latency for every model and peer (`scatter.png`, at the paper's size if among `sizes`, else the
    largest), linked from `<out>/curves.md`; returns the JSON written to `curves.json`."""
    s, started = setup or Setup(), time.time()
    at = {ds: dataset_spec(ds).labeled if dataset_spec(ds).labeled in sizes else max(sizes) for ds in datasets}
    runs = [run_one(ds, n, seed, s, s.peers if n == at[ds] else (), speed=n == at[ds])
            for ds in datasets for n in sizes for seed in s.seeds_for(ds)]
    summary = summarize(runs)
    Path(s.out).mkdir(parents=True, exist_ok=True)
    lines = ["# F1 x 100 (MCC for CoLA) against labelled examples, mean ± std over seeds", ""]
    for ds in datasets:
        by = {(r["labeled"], r["model"]): r for r in summary if r["dataset"] == ds}
        models = [m for m in _order(summary, s) if m == "teacher" or m.removesuffix("-nods") in s.students]
        plot_curves([r for r in summary if r["dataset"] == ds and r["model"] in models], sizes,
                     f"{TITLES.get(ds, ds)}: test score against labels", Path(s.out) / f"curves_{ds}.png")
        lines += [f"## {TITLES.get(ds, ds)}", "", f"![{ds} curves](curves_{ds}.png)", "",
                  _row(["model", *[f"{n} labels" for n in sizes]]), _row(["---"] * (len(sizes) + 1)),
                  *[_row([model_name(m), *[_pm(by.get((n, m)), "headline") for n in sizes]]) for m in models], ""]
    points = [r for r in summary if r["labeled"] == at[r["dataset"]] and "latency_ms" in r]
    plot_scatter(points, datasets, Path(s.out) / "scatter.png")
    lines += ["## Score against CPU latency (batch 1)", "", "![F1 against latency](scatter.png)", "",
              _row(["dataset", "labels", "model", "score", "batch-1 ms"]), _row(["---"] * 5),
              *[_row([r["dataset"], str(r["labeled"]), model_name(r["model"]), _pm(r, "headline"),
                      _pm(r, "latency_ms", 1, 2)]) for r in points]]
    plots = [f"curves_{ds}.png" for ds in datasets] + ["scatter.png"]
    return _write(s, "curves", {"datasets": list(datasets), "sizes": list(sizes), "plots": plots,
                                "summary": summary, "runs": runs}, lines, started)


def teachers(datasets: Sequence[str] = DATASETS, setup: Setup | None = None, names: Sequence[str] = (),
             recipes: Sequence[str] = ("strong",)) -> dict:
    """Issue 6's table: each teacher (`names`, default the setup's) fine-tuned with each recipe at every dataset's
    paper T-train size for every seed, with its test score beside the paper's BERT-base, training time and steps,
    held-out score (recipes that hold labels out) and batch-64 throughput; writes `<out>/teachers.json` and `.md`."""
    s, started = setup or Setup(), time.time()
    runs = [teacher_run(ds, dataset_spec(ds).labeled, seed, name, recipe, s) for ds in datasets
            for name in (names or [s.teacher_for(ds)]) for recipe in recipes for seed in s.seeds_for(ds)]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in runs:  # records written before `max_length` was kept were all at the recipes' default
        groups[(r["dataset"], r["teacher"], r["recipe"], r.get("max_length", Recipe.max_length))].append(r)
    summary = [{"dataset": ds, "labeled": rs[0]["labeled"], "teacher": t, "recipe": rc, "max_length": n,
                "runs": len(rs), "params": rs[0]["params"], **{k: mean_std([r[k] for r in rs if r[k] is not None])
                                              for k in ("headline", "accuracy", "seconds", "steps", "texts_per_s")},
                "held_out": mean_std([r["held_out"] for r in rs]) if rs[0]["held_out"] is not None else None}
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


def _write(s: Setup, name: str, result: dict, lines: list[str], started: float,
           sources: list[dict] | None = None) -> dict:
    """Add the footer (every size used, seeds, machine, timing), write `<out>/<name>.json` and `.md`; `sources`:
    the saved tables a merged one was assembled from, whose machine and timings it reports."""
    runs, out, seen = result["runs"], Path(s.out), set()
    lines += ["", f"Sizes used (labelled{'' if name == 'teachers' else ' / transfer'} / test texts):"]
    for r in runs:
        if (r["dataset"], r["labeled"]) not in seen:
            seen.add((r["dataset"], r["labeled"]))
            z, ref = r["sizes"], r["reference"]
            paper_size = dataset_spec(r["dataset"]).transfer
            scale = (f", scaled down to {s.transfer_size(r['dataset']):,} to fit this machine's time"
                     if s.transfer_size(r["dataset"]) < paper_size else "")
            full = "" if is_full_size(ref) else ", NOT the 109.5M one"
            speed = "" if ref is None else (f"; speed against {Path(ref['name']).name} ({_count(ref['params'])} "
                                            f"params, {ref['timed']}{full})")
            transfer = (f" / {z['transfer']:,} (paper S-train {paper_size:,}{scale})"
                        if "transfer" in z else "")
            teacher = "" if name == "teachers" else f"; teacher {Path(r['teacher']).name}"  # rows name theirs
            lines.append(f"- {r['dataset']}, {r['labeled']} labels: {z['labeled']:,}{transfer} / {z['test']:,} "
                         f"({r['test_split']}){teacher}{speed}")
    machine = sources[0]["machine"] if sources else {
        "processor": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "python": platform.python_version()}
    seeds = "; ".join(f"{ds} {', '.join(map(str, s.seeds_for(ds)))}"
                      for ds in dict.fromkeys(r["dataset"] for r in runs))
    if sources:  # a merged table: each file's own timings (its runs are gone, or on another machine)
        known = [src.get("teacher_seconds") for src in sources]
        tuning: float | None = None if None in known else sum(float(x) for x in known if x is not None)
        calls = "; ".join(f"{src['path']}, {', '.join(dict.fromkeys(r['dataset'] for r in src['runs']))}: "
                          f"{src['seconds']:,.0f} s, teacher fine-tuning "
                          + ("not recorded" if src.get("teacher_seconds") is None
                             else f"{src['teacher_seconds']:,.0f} s") for src in sources)
        timing = f"merged from saved tables ({calls})"
    else:
        tuning = sum(json.loads((Path(r["run"]) / "teacher" / "teacher.json").read_text()).get("training", {})
                     .get("seconds", 0) for r in runs)
        timing = (f"this call {time.time() - started:,.0f} s (a rerun reuses finished work), teacher fine-tuning "
                  f"{tuning:,.0f} s in all")
    lines.append(f"- seeds: {seeds} (mean ± sample std); machine {machine['processor']}, {machine['cores']} cores; "
                 f"{timing}")
    base = s.base or RunConfig()
    if name != "teachers":
        lines.append(f"- teacher recipe: {base.recipe}" + (f", {base.teacher_epochs:g} epochs (or its minimum steps)"
                                                           if base.teacher_epochs else ""))
    if any(r["reference"] for r in runs):
        lines.append("- speed: each model timed in one process with its reference, batched (teacher-size models 64 "
                     "a batch, students and peers 512) and at batch 1, tokenising included; students as deployed, "
                     "through the numpy runtime on one thread. A reference timed as a base encoder with a fresh "
                     "head costs what a fine-tuned one does. Compression is against 109.5M parameters.")
    if any(r["reference"] and not is_full_size(r["reference"]) for r in runs):
        lines.append("- `--speed-teacher mpnet-base` (after `tinydistill fetch-teacher mpnet-base`) also times the "
                     "109.5M teacher beside the students.")
    seconds = sum(src["seconds"] for src in sources) if sources else round(time.time() - started, 1)
    result = {"table": name, **result, "paper": PAPER, "setup": asdict(s), "machine": machine, "seconds": seconds,
              "teacher_seconds": tuning, **({"merged_from": [src["path"] for src in sources]} if sources else {}),
              "json": str(out / f"{name}.json"),
              "markdown": str(out / f"{name}.md")}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{name}.json", result)
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    return result
