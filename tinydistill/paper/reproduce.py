"""Run the paper's experiments for `tinydistill reproduce` (issue 4); `paper.tables` turns them into tables.

Each experiment is `pipeline.run` at a T-train size (the paper's Table 1 by default) for several seeds, plus the
peers of `tinydistill.paper.peers` on the same labels and test split; `teacher_run` fine-tunes and scores a teacher
alone.
Runs live in `<out>/<dataset>-<labels>-s<seed>-<teacher>` and are shared by the tables: the pipeline resumes from
them, augmentation pools (`<out>/pools`) and peer results (`<run>/peers`) are kept beside them and teacher logits
sit in the logit cache, so a rerun computes only what is missing.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tinydistill import data as data_mod
from tinydistill import evaluate, pipeline, pools
from tinydistill.bases import resolve_teacher
from tinydistill.config import RunConfig
from tinydistill.errors import TinyDistillError
from tinydistill.folders import logit_cache_path, write_json
from tinydistill.logitcache import LogitCache
from tinydistill.paper import peers
from tinydistill.paper.setup import Setup
from tinydistill.task import Task, load_task
from tinydistill.teacher import Classifier, Teacher

log = logging.getLogger(__name__)

REFERENCE_PARAMS = 109_500_000  # BERT-base, the paper's teacher; all-mpnet-base-v2 ("mpnet-base") is as large
AUGMENTED = ("sst2", "cola")  # the paper grew these transfer sets to 1M sentences (Jiao et al. 2020)
STATS = ("headline", "accuracy", "macro_f1", "params", "compression", "texts_per_s", "latency_ms", "speedup",
         "speedup_batch1", "agree_transfer", "agree_test", "ece_before", "ece")

# ------------------------------------------------------------------------------------------------ runs


def run_config(dataset: str, labeled: int, seed: int, s: Setup, speed: bool = True) -> RunConfig:
    """The pipeline settings of one run: a paper dataset, `labeled` labels, a seed and the (scaled) S-train."""
    base = s.base or RunConfig()
    teacher, data_dir = s.teacher_for(dataset), s.data_dir or base.data_dir
    size = s.transfer_size(dataset)
    return replace(base, data=dataset, data_dir=data_dir, labeled=labeled, seed=seed, teacher=teacher,
                   students=list(s.students), transfer=[*base.transfer, *pool(dataset, size, data_dir, s)],
                   transfer_size=size, test_size=s.test_size or base.test_size, grow="none",
                   out=str(run_folder(s, dataset, labeled, seed, teacher, base.recipe, base.max_length)),
                   speed=speed and base.speed)


def run_folder(s: Setup, dataset: str, labeled: int, seed: int, teacher: str, recipe: str,
               tokens: int | None = None) -> Path:
    """`<out>/<dataset>-<labels>-s<seed>-<teacher>[-<recipe>][-<tokens>tok]`: another teacher, recipe or teacher
    text length (`tokens`, when set), other folders."""
    suffix = ("" if recipe == "strong" else f"-{recipe}") + (f"-{tokens}tok" if tokens else "")
    return Path(s.out) / f"{dataset}-{labeled}-s{seed}-{Path(teacher).name}{suffix}"


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
    if not (manifest.exists() and json.loads(manifest.read_text()).get("complete")):  # a finished pool is not
        # reopened: write_pool would rebuild its candidates
        pools.write_pool(sentences, folder, need, method=s.augment, progress=s.progress)
    return [str(folder)]


def run_one(dataset: str, labeled: int, seed: int, s: Setup, peers: Sequence[str] = (), speed: bool = True) -> dict:
    """`pipeline.run` for one dataset, size and seed, then `peers` (and their hard-label twins) on its splits.

    Returns the sizes used, the speed reference and one record per model: scores, parameters, compression
    against 109.5M parameters and, with speed, throughput, batch-1 latency and speedups against the reference.
    """
    c = run_config(dataset, labeled, seed, s, speed)
    results = pipeline.run(c, progress=s.progress)
    log.info("%s: %s", c.run_dir(), results["sizes"])
    folder = c.run_dir()
    task = cache(lambda: load_task(c))  # loaded again only when a peer or the reference needs it

    @cache
    def teacher_labels() -> list[int]:  # the pipeline put these logits in the cache: nothing is computed
        # as the pipeline labelled: device, precision
        labeller = Teacher.from_pretrained(folder / "teacher").to(c.device)
        if results.get("hardware", {}).get("labelling", {}).get("precision") == "int8":
            labeller = labeller.int8()
        logits = labeller.logits(task().transfer, cache=LogitCache(logit_cache_path()), progress=False)
        return logits.argmax(1).tolist()

    rows = [{**row, "model": "teacher" if i == 0 else row["model"]} for i, row in enumerate(results["rows"])]
    ref = None
    if c.speed:
        ref = {"name": c.teacher, "params": rows[0]["params"], "texts_per_s": rows[0]["texts_per_s"],
               "latency_ms": rows[0]["latency_ms"], "timed": "the run's teacher"}
        if not is_full_size(ref) and s.speed_teacher:
            ref = time_reference(s.speed_teacher, task(), folder / "teacher") or ref
    records = [_record(row, ref) for row in rows]
    for name in peers:
        for hard in (False,) if name == "setfit" else (False, True):
            records.append(_peer(name, hard, c, folder, ref, task, teacher_labels))
    return {"dataset": dataset, "labeled": labeled, "seed": seed, "teacher": c.teacher, "run": str(folder),
            "sizes": results["sizes"], "test_split": results["test_split"], "reference": ref, "records": records}


def is_full_size(ref: dict | None) -> bool:
    """Whether a speed reference is BERT-base sized (the paper's teacher), so that speedups against it count."""
    return ref is not None and ref["params"] >= 0.99 * REFERENCE_PARAMS  # a BERT-base-sized reference


def _record(row: dict, ref: dict | None) -> dict:
    """A results row with compression and speedups against the reference (or 109.5M parameters, untimed)."""
    rec = {k: row[k] for k in ("model", "headline", "accuracy", "macro_f1", "params")}
    # agreement with the teacher and calibration: students of runs made since issue 17 (older records lack them)
    rec.update({k: row[k] for k in ("agree_transfer", "agree_test", "ece_before", "ece") if row.get(k) is not None})
    rec["compression"] = (ref["params"] if ref is not None and is_full_size(ref) else REFERENCE_PARAMS) / row["params"]
    if ref is not None and row.get("texts_per_s"):
        rec.update(texts_per_s=row["texts_per_s"], latency_ms=row["latency_ms"], speedup=row["texts_per_s"]
                   / ref["texts_per_s"], speedup_batch1=ref["latency_ms"] / row["latency_ms"])
    return rec


@lru_cache(maxsize=4)
def _reference_model(name: str, n_classes: int, max_length: int) -> Teacher:
    from transformers import AutoModel, AutoTokenizer  # the train extra; imported by the one function that needs it

    path = resolve_teacher(name)
    model = Classifier(AutoModel.from_pretrained(path), n_classes, "mean").eval()
    return Teacher(model, AutoTokenizer.from_pretrained(path), [str(i) for i in range(n_classes)], max_length)


def time_reference(name: str, task: Task, teacher_dir: Path) -> dict | None:
    """Time the base encoder `name` with a fresh head as the pipeline times its teacher, on the same test texts.

    Fine-tuning changes the weights, not the cost, so it times like the fine-tuned teacher would. None, with a
    warning, when it is not there (mpnet-base needs `tinydistill fetch-teacher mpnet-base`).
    """
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
    if name not in peers.PEERS:
        raise TinyDistillError(f"unknown peer {name!r}; expected some of {sorted(peers.PEERS)}")
    label, path = f"{name}-hard" if hard else name, folder / "peers" / f"{name}{'-hard' if hard else ''}.json"
    teacher_key = json.loads((folder / "teacher" / "teacher.json").read_text()).get("key")
    settings = {k: v for k, v in asdict(c).items() if k not in ("out", "speed", "device", "student_device")
                and not (k == "label_precision" and v == "fp32")}  # the keys from before these options hold
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
             **{k: mean_std([x[k] for x in recs if k in x]) for k in STATS if any(k in x for x in recs)}}
            for (ds, n, model), recs in groups.items()]


def mean_std(values: Sequence[float]) -> dict:
    """{"mean", "std" (sample; 0 for one value), "values"}: what the tables show as mean ± std over seeds."""
    v = [float(x) for x in values]
    return {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "values": v}


def teacher_run(dataset: str, labeled: int, seed: int, name: str, recipe: str, s: Setup) -> dict:
    """Fine-tune (or reuse) one teacher and score it on the test split; kept in `<run>/teacher-score.json`."""
    base = s.base or RunConfig()
    c = replace(base, data=dataset, data_dir=s.data_dir or base.data_dir, labeled=labeled, seed=seed, teacher=name,
                recipe=recipe, test_size=s.test_size or base.test_size,
                out=str(run_folder(s, dataset, labeled, seed, name, recipe, base.max_length)))
    task = load_task(c, transfer=False)
    teacher = pipeline.get_teacher(c, task, c.run_dir() / "teacher", s.progress)
    path, key = c.run_dir() / "teacher-score.json", pipeline.digest(teacher.fingerprint, task.test.texts)
    if path.exists() and json.loads(path.read_text()).get("key") == key:
        return json.loads(path.read_text())["record"]
    logits = teacher.logits(task.test.texts, cache=LogitCache(logit_cache_path()), progress=s.progress)
    row = evaluate.scores(task.test.labels or [], logits.argmax(1), len(task.labeled.label_names))
    training = teacher.info.get("training", {})
    record = {"dataset": dataset, "labeled": labeled, "seed": seed, "teacher": Path(name).name, "recipe": recipe,
              "max_length": teacher.max_length, "run": str(c.run_dir()), "params": teacher.n_parameters(),
              "test_split": task.test.source, "sizes": {"labeled": len(task.labeled), "test": len(task.test)},
              "reference": None,
              "headline": evaluate.headline(task.metric, row), **row, "seconds": training.get("seconds"),
              "steps": training.get("steps"), "held_out": training.get("held_out_accuracy"),
              "score_threads": torch.get_num_threads(),
              "texts_per_s": evaluate.throughput(lambda b: teacher.logits(b, progress=False), task.test.texts,
                                                 batch_size=64, min_seconds=2.0, max_texts=512)}
    write_json(path, {"key": key, "record": record})
    return record
