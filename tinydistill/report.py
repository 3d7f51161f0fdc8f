"""The report of a run: its results rows and table, the warnings a user should read, the speed figures, the
command that makes it again, and the provenance written into each model's config and card.
"""

from __future__ import annotations

import contextlib
import shlex
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from tinydistill import data as data_mod
from tinydistill import runtime
from tinydistill.cards import NAMES, update_provenance
from tinydistill.config import TEACHER_VECTOR_STUDENTS, RunConfig
from tinydistill.evaluate import agreement, ece, latency, scores, throughput
from tinydistill.runtime import softmax
from tinydistill.students import Student
from tinydistill.task import Task
from tinydistill.teacher import Teacher

AGREEMENT_MAX = 10_000  # transfer texts (a seeded sample) on which agreement with the teacher is measured


def student_rows(models: dict[str, Student], task: Task, seen_texts: list[str], seen_teacher: np.ndarray,
                 teacher_pred: np.ndarray) -> list[dict[str, Any]]:
    """The results row of every student: scores on the test split, calibration, agreement with the teacher on
    `seen_texts` (a sample of its transfer texts; `seen_teacher`: the teacher's classes there) and on the test
    texts (`teacher_pred`), and the share of unknown words."""
    gold, n_classes, rows = np.asarray(task.test.labels), len(task.labeled.label_names), []
    for label, student in models.items():
        test_logits = student.logits(task.test.texts)
        distilled = not label.endswith("-nods")  # the NoDs twins trained on the labels: none is left to fit on
        rows.append({"model": label, "params": student.n_parameters()["total"],
                     **scores(gold, test_logits.argmax(1), n_classes),
                     "ece_before": ece(gold, softmax(test_logits)),
                     "ece": ece(gold, softmax(test_logits, student.temperature_)) if distilled else None,
                     "temperature": student.temperature_,
                     "agree_transfer": agreement(student.logits(seen_texts).argmax(1), seen_teacher)
                     if distilled else None,
                     "agree_test": agreement(test_logits.argmax(1), teacher_pred),
                     "unknown_rate": unknown_rate(student, task.test.texts)})
    return rows


def unknown_rate(student: Student, texts: list[str]) -> float:
    """Share of the word tokens of `texts` (as far as the student reads them) that are not in its vocabulary."""
    ids = student.vocab_.encode_batch(texts)
    total = sum(len(x) for x in ids)
    return sum(int(np.count_nonzero(np.asarray(x) == 1)) for x in ids) / max(total, 1)


def command_line(c: RunConfig) -> str:
    """A `tinydistill run` command that makes this run again: the options that differ from the defaults."""
    default, args = RunConfig(), ["tinydistill", "run"]
    for f in fields(c):
        value = getattr(c, f.name)
        if (value == getattr(default, f.name) and f.name not in ("data", "teacher")) or value is None:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            args.append(f"--no-{f.name}")  # the three switches default to on
        elif f.name == "transfer":
            args += [x for source in value for x in ("--transfer", source)]
        elif f.name == "students":
            args += [flag, ",".join(value)]
        else:
            args += [flag, str(value)]
    return shlex.join(args)


def _card_scores(row: dict, metric: str, test: str) -> dict:
    keep = ("accuracy", "macro_f1", "f1", "mcc")
    return {"metric": metric, "headline": row["headline"], **{k: row[k] for k in keep if k in row}, "test": test}


def record_provenance(c: RunConfig, task: Task, results: dict, run_dir: Path, names: list[str]) -> None:
    """Write each student's and the teacher's provenance into its config and its model card (README.md)."""
    spec = data_mod.PAPER_DATASETS.get(c.data)
    rows, metric = results["rows"], results["metric"]
    test = f"{len(task.test):,} texts of {task.test.source}"
    common = {"teacher": c.teacher, "recipe": c.recipe, "data": c.data, "language": "en" if spec else None,
              "dataset_id": spec.hub_id if spec else None, "text_column": None if spec else c.text_column,
              "label_column": None if spec else c.label_column, "labeled": len(task.labeled),
              "classes": len(task.labeled.label_names), "command": results["command"]}
    teacher = rows[0]
    update_provenance(run_dir / "teacher", {
        **common, "method": "fine-tuned teacher", "params": teacher["params"], "scores": _card_scores(
            teacher, metric, test), "texts_per_s": teacher.get("texts_per_s"), "latency_ms": teacher.get("latency_ms")})
    grown = results.get("grown") or {}
    for name, row in zip(names, rows[1:]):
        nods = name.endswith("-nods")
        update_provenance(run_dir / "students" / name, {
            **common, "method": "labels only (NoDs)" if nods else "distilled", "teacher_params": teacher["params"],
            "transfer": None if nods else len(task.transfer), "scores": _card_scores(row, metric, test),
            "variants": grown["texts"] if name in grown.get("students", ()) else None,
            "embedding": TEACHER_VECTORS if c.teacher_vectors and name.removesuffix("-nods") in TEACHER_VECTOR_STUDENTS
            else None,
            "teacher_scores": _card_scores(teacher, metric, test), "agreement": row.get("agree_test"),
            "agreement_transfer": row.get("agree_transfer"), "temperature": row.get("temperature"),
            "params": row["params"], "texts_per_s": row.get("texts_per_s"), "latency_ms": row.get("latency_ms")})


TEACHER_VECTORS = "the fine-tuned teacher's vector of each word beside GloVe's (--teacher-vectors)"
HINTS = {"bilstm": "the BiLSTM student (--students bilstm)",
         "transfer": "more transfer text (tinydistill augment --data DATA --out POOL, then run with --transfer POOL)",
         "grown": "more unlabelled text of your own (--transfer FILE; this run already added augmentation variants)",
         "teacher": "a stronger teacher (--teacher mpnet-base)"}


def warnings_for(results: dict) -> list[str]:
    """One line per problem a user should know of: a distilled student more than 3 points below its teacher,
    or a teacher within 5 points of chance, on the headline metric or on accuracy (chance: the best constant
    predictor's score, `evaluate.chance`; MCC 0); each says what usually helps."""
    metric = "MCC" if results["metric"] == "mcc" else "F1"
    teacher, out = results["rows"][0], []
    floor, floor_acc = results["chance"], results.get("chance_accuracy")
    near = teacher["headline"] - floor < 0.05
    near_acc = floor_acc is not None and "accuracy" in teacher and teacher["accuracy"] - floor_acc < 0.05
    if near or near_acc:
        what = (f"{100 * teacher['headline']:.1f} {metric} (chance {100 * floor:.1f})" if near else
                f"{100 * teacher['accuracy']:.1f}% accuracy (always answering the largest class: "
                f"{100 * (floor_acc or 0.0):.1f}%)")
        stronger = "more labels" if "mpnet-base" in teacher["model"] else f"{HINTS['teacher']} or more labels"
        out.append(f"the teacher scores {what}, within 5 points of chance: its students cannot learn what it does "
                   f"not know; what usually helps: {stronger}")
    # hints for what this run already did are dropped: its BiLSTM is named instead, and mpnet-base when it taught
    trained = {r["model"] for r in results["rows"][1:]} | ({"teacher"} if "mpnet-base" in teacher["model"] else set())
    for row in results["rows"][1:]:
        gap = teacher["headline"] - row["headline"]
        if row["model"].endswith("-nods") or gap <= 0.03:
            continue
        grown = row["model"] in (results.get("grown") or {}).get("students", ())
        hints = [HINTS["grown" if k == "transfer" and grown else k] for k in ("bilstm", "transfer", "teacher")
                 if k != row["model"] and k not in trained]
        bilstm = next((r for r in results["rows"] if r["model"] == "bilstm"), None)
        if bilstm is not None and row is not bilstm and bilstm["headline"] > row["headline"]:
            hints.insert(0, f"this run's BiLSTM ({100 * bilstm['headline']:.1f} {metric})")
        out.append(f"{row['model']} is {100 * gap:.1f} {metric} points below its teacher "
                   f"({100 * row['headline']:.1f} against {100 * teacher['headline']:.1f}); what usually helps: "
                   + ", ".join(hints))
    return out


def measure_speed(rows: list[dict], teacher: Teacher, models: dict[str, Student], texts: list[str],
                  folder: Path) -> None:
    """Batched throughput and batch-1 latency for every model, in this one process, on the same texts.

    Students are timed as they are deployed: their saved folders (`folder/<name>`) through the numpy runtime that
    `tinydistill predict` and `serve` use, on one thread; the torch module's figures are kept beside (`torch_*`).
    """
    t_rate = throughput(lambda b: teacher.logits(b, progress=False), texts, batch_size=64, min_seconds=2.0,
                        max_texts=512)
    t_lat = latency(lambda b: teacher.logits(b, progress=False), texts, n=50)
    rows[0].update(texts_per_s=t_rate, latency_ms=t_lat * 1e3, speedup=1.0, speedup_batch1=1.0)
    for row, (name, student) in zip(rows[1:], models.items()):
        deployed = runtime.load(folder / name)
        with one_blas_thread():
            rate, lat = throughput(deployed.logits, texts, batch_size=512), latency(deployed.logits, texts)
        row.update(texts_per_s=rate, latency_ms=lat * 1e3, speedup=rate / t_rate, speedup_batch1=t_lat / lat,
                   torch_texts_per_s=throughput(student.logits, texts, batch_size=512),
                   torch_latency_ms=latency(student.logits, texts) * 1e3)


def one_blas_thread():
    """numpy's BLAS on one thread (threadpoolctl comes with scikit-learn), as the torch students run."""
    try:
        from threadpoolctl import threadpool_limits  # optional: comes with scikit-learn
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def format_table(results: dict) -> str:
    """The paper's Table 2 layout: one row per model, its score, size, compression and speedup."""
    metric = "MCC" if results["metric"] == "mcc" else "F1"
    head = (f"| model | {metric} | acc | macro-F1 | ECE | ECE calibrated | agree transfer | agree test | unknown words "
            "| params | compression | texts/s | speedup | batch-1 ms | speedup b1 |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]

    def cell(r: dict, key: str, scale: float = 1.0, digits: int = 3) -> str:  # old results lack the new keys
        return "-" if r.get(key) is None else f"{scale * r[key]:.{digits}f}"

    for i, r in enumerate(results["rows"]):
        speed = (f"{r['texts_per_s']:,.0f} | x{r['speedup']:,.0f} | {r['latency_ms']:.2f} | x{r['speedup_batch1']:,.0f}"
                 if "texts_per_s" in r else "- | - | - | -")
        calibration = (f"{cell(r, 'ece')} | -" if i == 0 else f"{cell(r, 'ece_before')} | {cell(r, 'ece')}")
        lines.append(f"| {r['model']} | {100 * r['headline']:.1f} | {100 * r['accuracy']:.1f} | "
                     f"{100 * r['macro_f1']:.1f} | {calibration} | {cell(r, 'agree_transfer', 100, 1)} | "
                     f"{cell(r, 'agree_test', 100, 1)} | {cell(r, 'unknown_rate', 100, 1)} | {r['params']:,} | "
                     f"x{r['compression']:,.0f} | {speed} |")
    s = results["sizes"]
    grown = results.get("grown")
    lines.append(f"\n{s['labeled']} labels, {s['transfer']:,} transfer texts, {s['test']:,} test texts "
                 f"({results['test_split']}); {results['seconds']:.0f} s")
    if grown:
        lines.append(f"A small transfer set: {', '.join(grown.get('students', []))} also trained on "
                     f"{grown['texts']:,} {grown['method']} variants of the {grown['from']:,} transfer texts, labelled "
                     "by the teacher (--grow none: not).")
    config = results.get("config", {})
    mine = [NAMES[name] for name in config.get("students", []) if name in TEACHER_VECTOR_STUDENTS]
    if config.get("teacher_vectors") and mine:
        lines.append(f"The {' and '.join(mine)} word embedding{'s' if len(mine) > 1 else ''} started from "
                     f"{TEACHER_VECTORS}.")
    if s.get("calibration"):
        about = results.get("calibration", {}).get("about", "held-out texts")
        lines.append(f"ECE: expected calibration error on the test texts (15 bins); calibrated: with the temperature "
                     f"fitted on {s['calibration']} {about}. Agreement "
                     "with the teacher (%) on the transfer texts the student trained on and on the test texts; "
                     "unknown words: % of the test texts' words not in the student's vocabulary.")
    lines += [f"\nwarning: {w}" for w in results.get("warnings", [])]
    return "\n".join(lines)
