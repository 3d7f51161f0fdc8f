"""Reproduce the paper's Tables 2 and 3 and F1 curves: `tinydistill reproduce {table2,table3,curves}` (issue 4).

Each experiment is `pipeline.run` at a T-train size (the paper's Table 1 by default) for several seeds, plus the
peers of `tinydistill.peers` on the same labels and test split; the Markdown puts our mean ± std beside the
paper's figure. Runs live in `<out>/<dataset>-<labels>-s<seed>-<teacher>` and are shared by the three tables: the
pipeline resumes from them, augmentation pools (`<out>/pools`) and peer results (`<run>/peers`) are kept beside
them and teacher logits sit in the logit cache, so a rerun computes only what is missing.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import platform
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tinydistill import data as data_mod
from tinydistill.errors import TinyDistillError

if TYPE_CHECKING:
    from tinydistill.pipeline import RunConfig, Task
    from tinydistill.teacher import Teacher

log = logging.getLogger(__name__)

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
REFERENCE_PARAMS = 109_500_000  # BERT-base, the paper's teacher; all-mpnet-base-v2 ("mpnet-base") is as large
AUGMENTED = ("sst2", "cola")  # the paper grew these transfer sets to 1M sentences (Jiao et al. 2020)
DATASETS = ("agnews", "emotion", "imdb", "sst2", "cola")  # Table 2's column order
NAMES = {"cbow": "CBoW-FFN", "bilstm": "BiLSTM", "cnn": "CNN", "fasttext": "fastText", "setfit": "SetFit (MiniLM)",
         "tfidf-lr": "TF-IDF + LR"}
TITLES = {"agnews": "AGNews", "emotion": "Emotion", "imdb": "IMDB", "sst2": "SST-2", "cola": "CoLA"}
STATS = ("headline", "accuracy", "macro_f1", "params", "compression", "texts_per_s", "latency_ms", "speedup",
         "speedup_batch1")


@dataclass
class Setup:
    """What the three reproductions share; each field is an option of `tinydistill reproduce`."""

    seeds: tuple[int, ...] = (0, 1, 2)  # the paper reports one run; we report mean ± std over these
    teacher: str = "minilm"  # "mpnet-base" (109.5M, after `tinydistill fetch-teacher`) where the CPU time allows
    teachers: dict[str, str] = field(default_factory=dict)  # per-dataset choices that override `teacher`
    transfer_scale: float | None = None  # fraction of the paper's S-train to use when all of it takes too long
    augment: str = "glove"  # how SST-2/CoLA pools grow: TinyBERT word replacement from GloVe, or "tang"
    out: str = "runs/reproduce"
    data_dir: str | None = None  # folder laid out like shared/data; else $TINYDISTILL_DATA, else the hub
    peers: tuple[str, ...] = ("fasttext", "model2vec", "setfit")  # each but SetFit also on the teacher's labels
    students: tuple[str, ...] = ("cbow", "bilstm")
    speed_teacher: str | None = None  # a 109.5M encoder timed beside runs with a smaller teacher ("mpnet-base")
    base: RunConfig | None = None  # other pipeline settings (recipe, epochs, GloVe, speed); None: the defaults
    progress: bool = True

    def teacher_for(self, dataset: str) -> str:
        return self.teachers.get(dataset, self.teacher)


# ------------------------------------------------------------------------------------------------ runs


def run_config(dataset: str, labeled: int, seed: int, s: Setup, speed: bool = True) -> RunConfig:
    """The pipeline settings of one run: a paper dataset, `labeled` labels, a seed and the (scaled) S-train."""
    from tinydistill.pipeline import RunConfig

    base = s.base or RunConfig()
    teacher, data_dir = s.teacher_for(dataset), s.data_dir or base.data_dir
    size = max(1, round(_spec(dataset).transfer * (s.transfer_scale or 1.0)))
    out = Path(s.out) / f"{dataset}-{labeled}-s{seed}-{Path(teacher).name}"  # another teacher, other folders
    return replace(base, data=dataset, data_dir=data_dir, labeled=labeled, seed=seed, teacher=teacher,
                   students=list(s.students), transfer=[*base.transfer, *pool(dataset, size, data_dir, s)],
                   transfer_size=size, out=str(out), speed=speed and base.speed)


def pool(dataset: str, size: int, data_dir: str | None, s: Setup) -> list[str]:
    """For SST-2 and CoLA, an augmentation pool that tops the training split up to `size` transfer texts."""
    if dataset not in AUGMENTED:
        return []
    sentences = data_mod.load_paper_dataset(dataset, data_mod.PAPER_DATASETS[dataset].train, data_dir).texts
    need = size - len(sentences)
    if need <= 0:
        return []
    folder = Path(s.out) / "pools" / f"{dataset}-{s.augment}-{need}"
    manifest = folder / "manifest.json"
    if not (manifest.exists() and json.loads(manifest.read_text()).get("complete")):
        from tinydistill import augment  # a finished pool is not reopened: write_pool would rebuild its candidates

        augment.write_pool(sentences, folder, need, method=s.augment, progress=s.progress)
    return [str(folder)]


def run_one(dataset: str, labeled: int, seed: int, s: Setup, peers: Sequence[str] = (), speed: bool = True) -> dict:
    """`pipeline.run` for one dataset, size and seed, then `peers` (and their hard-label twins) on its splits.

    Returns the sizes used, the speed reference and one record per model: scores, parameters, compression
    against 109.5M parameters and, with speed, throughput, batch-1 latency and speedups against the reference.
    """
    from tinydistill import pipeline
    from tinydistill.teacher import LogitCache, Teacher, cache_root

    c = run_config(dataset, labeled, seed, s, speed)
    results = pipeline.run(c, progress=s.progress)
    log.info("%s: %s", c.run_dir(), results["sizes"])
    folder = c.run_dir()
    task = cache(lambda: pipeline.load_task(c))  # loaded again only when a peer or the reference needs it

    @cache
    def teacher_labels() -> list[int]:  # the pipeline put these logits in the cache: nothing is computed
        logits = Teacher.load(folder / "teacher").logits(
            task().transfer, cache=LogitCache(cache_root() / "logits.sqlite"), progress=False)
        return logits.argmax(1).tolist()

    rows = [{**row, "model": "teacher" if i == 0 else row["model"]} for i, row in enumerate(results["rows"])]
    ref = None
    if c.speed:
        ref = {"name": c.teacher, "params": rows[0]["params"], "texts_per_s": rows[0]["texts_per_s"],
               "latency_ms": rows[0]["latency_ms"], "timed": "the run's teacher"}
        if not _full(ref) and s.speed_teacher:
            ref = time_reference(s.speed_teacher, task(), folder / "teacher") or ref
    records = [_record(row, ref) for row in rows]
    for name in peers:
        for hard in (False,) if name == "setfit" else (False, True):
            records.append(_peer(name, hard, c, folder, ref, task, teacher_labels))
    return {"dataset": dataset, "labeled": labeled, "seed": seed, "teacher": c.teacher, "run": str(folder),
            "sizes": results["sizes"], "test_split": results["test_split"], "reference": ref, "records": records}


def _full(ref: dict | None) -> bool:
    return ref is not None and ref["params"] >= 0.99 * REFERENCE_PARAMS  # a BERT-base-sized reference


def _record(row: dict, ref: dict | None) -> dict:
    """A results row with compression and speedups against the reference (or 109.5M parameters, untimed)."""
    rec = {k: row[k] for k in ("model", "headline", "accuracy", "macro_f1", "params")}
    rec["compression"] = (ref["params"] if ref is not None and _full(ref) else REFERENCE_PARAMS) / row["params"]
    if ref is not None and row.get("texts_per_s"):
        rec.update(texts_per_s=row["texts_per_s"], latency_ms=row["latency_ms"], speedup=row["texts_per_s"]
                   / ref["texts_per_s"], speedup_batch1=ref["latency_ms"] / row["latency_ms"])
    return rec


@lru_cache(maxsize=4)
def _reference_model(name: str, n_classes: int, max_length: int) -> Teacher:
    from transformers import AutoModel, AutoTokenizer

    from tinydistill.teacher import Classifier, Teacher, resolve_teacher

    path = resolve_teacher(name)
    model = Classifier(AutoModel.from_pretrained(path), n_classes, "mean").eval()
    return Teacher(model, AutoTokenizer.from_pretrained(path), [str(i) for i in range(n_classes)], max_length)


def time_reference(name: str, task: Task, teacher_dir: Path) -> dict | None:
    """Time the base encoder `name` with a fresh head as the pipeline times its teacher, on the same test texts.

    Fine-tuning changes the weights, not the cost, so it times like the fine-tuned teacher would. None, with a
    warning, when it is not there (mpnet-base needs `tinydistill fetch-teacher mpnet-base`).
    """
    from tinydistill import evaluate

    max_length = json.loads((teacher_dir / "teacher.json").read_text())["max_length"]  # the run teacher's
    try:
        model = _reference_model(name, len(task.labeled.label_names), max_length)
    except (TinyDistillError, OSError, ValueError) as exc:
        log.warning("speed teacher %s is not available (%s); speed is against the run's own teacher", name, exc)
        return None

    def predict(batch: list[str]) -> np.ndarray:
        return model.logits(batch, progress=False)

    rate = evaluate.throughput(predict, task.test.texts, batch_size=64, min_seconds=2.0, max_texts=512)
    return {"name": name, "params": model.n_parameters(), "texts_per_s": rate,
            "latency_ms": evaluate.latency(predict, task.test.texts, n=50) * 1e3, "timed": "base encoder, fresh head"}


def _peer(name: str, hard: bool, c: RunConfig, folder: Path, ref: dict | None, task: Callable[[], Task],
          teacher_labels: Callable[[], list[int]]) -> dict:
    """A peer trained on the run's labels, or on the teacher's argmax over its transfer set when `hard`; scored
    and timed like the students and kept in `<run>/peers/<name>[-hard].json` for as long as nothing changes."""
    from tinydistill import evaluate, peers
    from tinydistill.pipeline import write_json

    if name not in peers.PEERS:
        raise TinyDistillError(f"unknown peer {name!r}; expected some of {sorted(peers.PEERS)}")
    label, path = f"{name}-hard" if hard else name, folder / "peers" / f"{name}{'-hard' if hard else ''}.json"
    teacher_key = json.loads((folder / "teacher" / "teacher.json").read_text()).get("key")
    settings = {k: v for k, v in asdict(c).items() if k not in ("out", "speed")}
    key = hashlib.sha256(json.dumps([label, settings, teacher_key, ref and ref["name"]], sort_keys=True,
                                    default=str).encode()).hexdigest()[:16]
    if path.exists() and json.loads(path.read_text()).get("key") == key:
        return json.loads(path.read_text())["record"]
    cls, t = peers.PEERS[name], task()
    peer = cls(seed=c.seed) if "seed" in inspect.signature(cls).parameters else cls()  # type: ignore[call-arg]
    if hard:
        peer.fit(t.transfer, teacher_labels())
    else:
        peer.fit(t.labeled.texts, t.labeled.labels or [])
    predicted = peer.predict(t.test.texts)
    row: dict[str, Any] = {"model": label, "params": peer.n_parameters,  # type: ignore[attr-defined]
                           **evaluate.scores(t.test.labels or [], predicted, len(t.labeled.label_names))}
    row["headline"] = evaluate.headline(t.metric, row)
    if ref is not None:  # as the pipeline times students, in the process that timed the reference
        row["texts_per_s"] = evaluate.throughput(peer.predict_proba, t.test.texts, batch_size=512)
        row["latency_ms"] = evaluate.latency(peer.predict_proba, t.test.texts) * 1e3
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"key": key, "record": _record(row, ref)})
    return _record(row, ref)


def summarize(runs: list[dict]) -> list[dict]:
    """Mean, sample standard deviation and values over seeds, per dataset, T-train size and model."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in runs:
        for rec in r["records"]:
            groups[(r["dataset"], r["labeled"], rec["model"])].append(rec)
    return [{"dataset": ds, "labeled": n, "model": model, "runs": len(recs),
             **{k: _stat([x[k] for x in recs if k in x]) for k in STATS if any(k in x for x in recs)}}
            for (ds, n, model), recs in groups.items()]


def _stat(values: Sequence[float]) -> dict:
    v = [float(x) for x in values]
    return {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "values": v}


# --------------------------------------------------------------------------------------------- tables


def table2(datasets: Sequence[str] = DATASETS, setup: Setup | None = None) -> dict:
    """Table 2: teacher, students and peers at each dataset's paper T-train size, F1 (MCC for CoLA) beside the
    paper's, with compression and speedups; writes `<out>/table2.json` and `table2.md`; returns the JSON."""
    s, started = setup or Setup(), time.time()
    runs = [run_one(ds, _spec(ds).labeled, seed, s, s.peers) for ds in datasets for seed in s.seeds]
    summary = summarize(runs)
    by = {(r["dataset"], r["model"]): r for r in summary}
    teachers = {r["dataset"]: Path(r["teacher"]).name for r in runs}
    metric = {ds: "MCC" if _spec(ds).metric == "mcc" else "F1" for ds in datasets}
    head = ["model", *[h for ds in datasets for h in (f"{TITLES.get(ds, ds)} {metric[ds]}", "acc", "paper")],
            "params", "compression", "paper", "texts/s", "speedup", "batch-1 ms", "speedup b1", "paper"]
    lines = ["# Table 2: F1 x 100 (MCC for CoLA), ours as mean ± std over seeds beside the paper's; compression "
             "and speedups against the 109.5M teacher", "", _row(head), _row(["---"] * len(head)),
             _row(["teacher used", *[x for ds in datasets for x in (teachers[ds], "", "BERT-base")], *[""] * 8])]
    for model in _order(summary, s):
        cells = [_name(model)]
        for ds in datasets:
            r = by.get((ds, model))
            cells += [_pm(r, "headline"), _pm(r, "accuracy"), _paper(PAPER["table2"].get(model, {}).get(ds))]
        every = summarize([{"dataset": "", "labeled": 0, "records": [x for r in runs for x in r["records"]
                                                                     if x["model"] == model]}])[0]
        ratios = PAPER["table2_ratios"].get(model, {})
        lines.append(_row([*cells, _count(every["params"]["mean"]), _pm(every, "compression", 1, 0, "x"),
                           _paper(ratios.get("compression"), "x"), _pm(every, "texts_per_s", 1, 0),
                           _pm(every, "speedup", 1, 1, "x"), _pm(every, "latency_ms", 1, 2),
                           _pm(every, "speedup_batch1", 1, 1, "x"), _paper(ratios.get("speedup"), "x")]))
    lines += ["", f"Params, compression and speed: mean ± std over every dataset and seed. {PAPER_NOTE}"]
    return _write(s, "table2", {"datasets": list(datasets), "summary": summary, "runs": runs}, lines, started)


def table3(sizes: Sequence[int] = PAPER["table3_sizes"], setup: Setup | None = None) -> dict:
    """Table 3: SST-2 with few and many labels (the paper's 200 and 6920), students with and without
    distillation; writes `<out>/table3.json` and `table3.md`; returns the JSON."""
    s, started = setup or Setup(), time.time()
    runs = [run_one("sst2", n, seed, s, speed=False) for n in sizes for seed in s.seeds]
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
            for ds in datasets for n in sizes for seed in s.seeds]
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


def _spec(dataset: str) -> data_mod.PaperDataset:
    if dataset not in data_mod.PAPER_DATASETS:
        raise TinyDistillError(f"unknown dataset {dataset!r}; expected some of {list(data_mod.PAPER_DATASETS)}")
    return data_mod.PAPER_DATASETS[dataset]


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
    if not row or key not in row:
        return "-"
    return f"{prefix}{scale * row[key]['mean']:,.{digits}f} ± {scale * row[key]['std']:,.{digits}f}"


def _paper(value: float | None, prefix: str = "") -> str:
    return "-" if value is None else f"{prefix}{value:g}"


def _count(n: float) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}K" if n >= 1e3 else f"{n:.0f}"


def _write(s: Setup, name: str, result: dict, lines: list[str], started: float) -> dict:
    """Add the footer (every size used, seeds, machine, timing), write `<out>/<name>.json` and `.md`."""
    import torch

    from tinydistill.pipeline import write_json

    runs, out, seen = result["runs"], Path(s.out), set()
    lines += ["", "Sizes used (labelled / transfer / test texts):"]
    for r in runs:
        if (r["dataset"], r["labeled"]) not in seen:
            seen.add((r["dataset"], r["labeled"]))
            z, ref = r["sizes"], r["reference"]
            scale = f" x {s.transfer_scale:g}, scaled down to fit this machine's time" if s.transfer_scale else ""
            speed = "" if ref is None else (f"; speed against {Path(ref['name']).name} ({_count(ref['params'])} "
                                            f"params, {ref['timed']}{'' if _full(ref) else ', NOT the 109.5M one'})")
            lines.append(f"- {r['dataset']}, {r['labeled']} labels: {z['labeled']:,} / {z['transfer']:,} (paper "
                         f"S-train {_spec(r['dataset']).transfer:,}{scale}) / {z['test']:,} ({r['test_split']}); "
                         f"teacher {Path(r['teacher']).name}{speed}")
    machine = {"processor": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "torch_threads": torch.get_num_threads(), "python": platform.python_version()}
    tuning = sum(json.loads((Path(r["run"]) / "teacher" / "teacher.json").read_text()).get("training", {})
                 .get("seconds", 0) for r in runs)
    lines.append(f"- seeds {', '.join(map(str, s.seeds))} (mean ± sample std); machine {machine['processor']}, "
                 f"{machine['cores']} cores; this call {time.time() - started:,.0f} s (a rerun reuses finished "
                 f"work), teacher fine-tuning {tuning:,.0f} s in all")
    if any(r["reference"] for r in runs):
        lines.append("- speed: each model timed in one process with its reference, batched (teacher-size models 64 "
                     "a batch, students and peers 512) and at batch 1; a reference timed as a base encoder with a "
                     "fresh head costs what a fine-tuned one does. Compression is against 109.5M parameters.")
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


def setup_from_args(a) -> Setup:
    """A `Setup` from `tinydistill reproduce` options; `--teacher minilm,imdb=mpnet-base` picks per dataset."""
    plain = [t for t in _csv(a.teacher) if "=" not in t]
    return Setup(seeds=tuple(a.seeds), teacher=plain[-1] if plain else "minilm", transfer_scale=a.transfer_scale,
                 teachers=dict(t.split("=", 1) for t in _csv(a.teacher) if "=" in t), augment=a.augment, out=a.out,
                 data_dir=a.data_dir, peers=tuple(getattr(a, "peers", ())), students=tuple(a.students),
                 speed_teacher=a.speed_teacher, progress=not getattr(a, "quiet", False))


def _command(a) -> None:
    s = setup_from_args(a)
    result = (table2(a.datasets, s) if a.table == "table2" else table3(a.sizes, s) if a.table == "table3"
              else curves(a.datasets, a.sizes, s))
    print(Path(result["markdown"]).read_text())
    print(f"results: {result['json']}\ntable: {result['markdown']}")


def register_cli(sub) -> None:
    """`tinydistill reproduce {table2,table3,curves}` (called by tinydistill.cli)."""
    p = sub.add_parser("reproduce", help="the paper's Tables 2 and 3 and F1 curves, resumable",
                       description="Run the paper's experiments (its T-train sizes, several seeds) and write JSON and "
                       "Markdown with the paper's figures beside ours. Rerun the same command to resume.")
    which = p.add_subparsers(dest="table", required=True, metavar="WHAT")
    for name, text in (("table2", "every dataset at the paper's label count: teacher, students, peers, speed"),
                       ("table3", "SST-2 with few and many labels, with and without distillation"),
                       ("curves", "F1 against labels and against latency, as PNG (needs matplotlib)")):
        q = which.add_parser(name, help=text, description=text)
        if name != "table3":
            q.add_argument("--datasets", type=_csv, help="comma list of paper datasets (default: %(default)s)",
                           default=",".join(DATASETS if name == "table2" else ("sst2", "agnews")))
            q.add_argument("--peers", type=_csv, default="fasttext,model2vec,setfit",
                           help="comma list of fasttext, model2vec, setfit, tfidf-lr, or '' (default: %(default)s)")
        if name != "table2":
            q.add_argument("--sizes", type=_ints, help="labels per run (default: %(default)s)", default=",".join(
                map(str, PAPER["table3_sizes"] if name == "table3" else (50, 100, 200, 500, 1000))))
        q.add_argument("--seeds", type=_ints, default="0,1,2", help="default: %(default)s")
        q.add_argument("--teacher", default="minilm", help="minilm or mpnet-base; DATASET=NAME entries choose per "
                       "dataset, e.g. mpnet-base,imdb=minilm (default: %(default)s)")
        q.add_argument("--transfer-scale", type=float, help="use this fraction of the paper's S-train (e.g. 0.05) "
                       "where all of it does not fit the time; the table says so")
        q.add_argument("--augment", default="glove", choices=["glove", "tang"], help="how SST-2/CoLA pools grow")
        q.add_argument("--data-dir", help="folder laid out like shared/data (default: $TINYDISTILL_DATA)")
        q.add_argument("--out", default="runs/reproduce", help="runs, pools and tables (default: %(default)s)")
        q.add_argument("--students", type=_csv, default="cbow,bilstm", help="comma list of cbow, bilstm, cnn")
        q.add_argument("--speed-teacher", help="a 109.5M encoder to time beside the students when the teacher is "
                       "smaller: mpnet-base (after `tinydistill fetch-teacher mpnet-base`)")
        q.set_defaults(func=_command)
