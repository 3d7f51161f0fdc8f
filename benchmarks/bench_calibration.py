"""Calibration of the students of finished runs: ECE before and after, which held-out target the temperature
should be fitted on, agreement with the teacher, unknown-word rates and the warnings, as Markdown + JSON.

    python benchmarks/bench_calibration.py runs/cal-sst2-s* runs/cal-agnews-s* --out results/calibration \
        --recorded results/table2.json

For every distilled student of every run folder it reads `results.json` and, with `--options`, refits the
temperature on each candidate held-out set to compare them on the true test labels:
- `labels`: labelled texts outside the teacher's sample, held out of the student's transfer set, against their
  gold labels (what `tinydistill run` does; the temperature stored in the student's config.json);
- `transfer-soft`: the slice of the transfer set that training held out for model selection (5%, at most 2,000
  texts), against the teacher's probabilities;
- `transfer-hard`: the same slice against the teacher's argmax;
- `oracle`: the test split itself, the best a single temperature can do (not available to a user).
The teacher's logits come from the run's cache (nothing is recomputed when the run finished).
`--recorded TABLE.json` also lists the warnings `tinydistill run` would give on the runs a `reproduce` table
recorded (their scores as recorded; chance from each dataset's test labels).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from tinydistill import data as data_mod
from tinydistill.calibration import calibration_split
from tinydistill.config import RunConfig
from tinydistill.distill import TrainConfig
from tinydistill.evaluate import chance, ece, fit_temperature
from tinydistill.folders import logit_cache_path, write_json
from tinydistill.logitcache import LogitCache
from tinydistill.report import warnings_for
from tinydistill.runtime import softmax
from tinydistill.students import Student
from tinydistill.task import load_task
from tinydistill.teacher import Teacher

NAMES = {"cbow": "CBoW-FFN", "bilstm": "BiLSTM"}


def options(run: Path, results: dict) -> dict[str, dict[str, float]]:
    """Per student: the test ECE with the temperature fitted on each candidate held-out set."""
    c = RunConfig(**results["config"])
    task = load_task(c)
    teacher = Teacher.from_pretrained(run / "teacher")
    cache = LogitCache(logit_cache_path())
    transfer_logits = teacher.logits(task.transfer, cache=cache, progress=False)
    cal_texts = calibration_split(task, transfer_logits, c.seed)[0]
    held = set(cal_texts)
    keep = [i for i, t in enumerate(task.transfer) if t not in held]
    texts, logits = [task.transfer[i] for i in keep], transfer_logits[keep]
    # the rows `distill.fit_module` held out for model selection: its first draw from default_rng(seed)
    t = TrainConfig(seed=c.seed)
    n_val = min(int(len(texts) * t.val_fraction), t.val_max)
    val = np.random.default_rng(t.seed).permutation(len(texts))[:n_val]
    gold = np.asarray(task.test.labels)
    out = {}
    for name in c.students:
        student = Student.from_pretrained(run / "students" / name)
        test, held_out = student.logits(task.test.texts), student.logits([texts[i] for i in val])
        temps = {"labels": student.temperature_,
                 "transfer-soft": fit_temperature(held_out, softmax(logits[val])),
                 "transfer-hard": fit_temperature(held_out, logits[val].argmax(1)),
                 "oracle": fit_temperature(test, gold)}  # the test split itself: the best one temperature can do
        out[name] = {k: {"temperature": v, "ece": ece(gold, softmax(test, v))} for k, v in temps.items()}
    return out


def recorded_warnings(path: Path) -> list[dict]:
    """The warnings of `report.warnings_for` on every run of a `reproduce` table (teacher + distilled students)."""
    out = []
    for r in json.loads(path.read_text())["runs"]:
        spec = data_mod.PAPER_DATASETS[r["dataset"]]
        test = data_mod.load_paper_dataset(r["dataset"], spec.test, None)
        if r["sizes"]["test"] < len(test):  # the pipeline's --test-size sample
            test = data_mod.stratified_sample(test, r["sizes"]["test"], 0)[0]
        rows = [rec for rec in r["records"] if rec["model"] in ("teacher", "cbow", "bilstm")]
        floor = chance(spec.metric, test.labels or [], len(test.label_names))
        lines = warnings_for({"metric": spec.metric, "chance": floor, "rows": rows,
                              "chance_accuracy": chance("accuracy", test.labels or [], len(test.label_names))})
        out.append({"data": r["dataset"], "seed": r["seed"], "scores": {x["model"]: x["headline"] for x in rows},
                    "chance": floor, "warnings": lines})
    return out


def pm(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "-"
    if len(v) == 1:
        return f"{scale * v[0]:.{digits}f}"
    return f"{scale * np.mean(v):.{digits}f} ± {scale * np.std(v, ddof=1):.{digits}f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="run folders with results.json")
    p.add_argument("--out", required=True, help="output prefix: writes PREFIX.md and PREFIX.json")
    p.add_argument("--options", action="store_true", help="also compare the held-out targets (loads the teacher)")
    p.add_argument("--recorded", type=Path, help="a reproduce table's JSON: the warnings its runs would get")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    records, warnings = [], []
    for folder in map(Path, a.runs):
        results = json.loads((folder / "results.json").read_text())
        cfg = results["config"]
        opts = options(folder, results) if a.options else {}
        teacher = results["rows"][0]
        warnings += [{"run": str(folder), "data": cfg["data"], "seed": cfg["seed"], "warning": w}
                     for w in results.get("warnings", [])]
        for row in results["rows"][1:]:
            if row["model"].endswith("-nods"):
                continue
            records.append({"data": cfg["data"], "seed": cfg["seed"], "student": row["model"], "run": str(folder),
                            "headline": row["headline"], "teacher_headline": teacher["headline"],
                            "teacher_ece": teacher["ece"], "ece_before": row["ece_before"], "ece": row["ece"],
                            "temperature": row["temperature"], "agree_transfer": row["agree_transfer"],
                            "agree_test": row["agree_test"], "unknown_rate": row["unknown_rate"],
                            "calibration_texts": results["sizes"].get("calibration"),
                            "options": opts.get(row["model"], {})})
    lines = ["# Calibration of the students (temperature scaling), test splits", "",
             "ECE: expected calibration error of the top label, 15 equal-width bins, against the test split's gold "
             "labels; before: softmax of the raw logits; after: with the temperature that `tinydistill run` "
             "fitted on 500 labelled training texts that neither the teacher (outside its `--labeled` sample) nor "
             "the student (held out of its transfer set) trained on, against their gold labels. Agreement: "
             "% of texts on which the student's label is the teacher's, on the transfer texts it trained on and "
             "on the test texts. Mean ± sample std over seeds.", "",
             "| data | student | seeds | F1/MCC | teacher | teacher ECE | ECE before | ECE after | temperature | "
             "agree transfer | agree test | unknown words |", "|" + "---|" * 12]
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["data"], r["student"]), []).append(r)
    for (data, student), rs in groups.items():
        col = lambda k: [r[k] for r in rs]  # noqa: E731
        lines.append(f"| {data} | {NAMES.get(student, student)} | {len(rs)} | {pm(col('headline'), 100, 1)} | "
                     f"{pm(col('teacher_headline'), 100, 1)} | {pm(col('teacher_ece'))} | {pm(col('ece_before'))} | "
                     f"**{pm(col('ece'))}** | {pm(col('temperature'), 1, 2)} | {pm(col('agree_transfer'), 100, 1)} | "
                     f"{pm(col('agree_test'), 100, 1)} | {pm(col('unknown_rate'), 100, 1)} |")
    lines += ["", "## Per seed", "", "| data | seed | student | ECE before | ECE after | temperature | teacher ECE | "
              "agree transfer | agree test |", "|" + "---|" * 9]
    lines += [f"| {r['data']} | {r['seed']} | {NAMES.get(r['student'], r['student'])} | {r['ece_before']:.3f} | "
              f"{r['ece']:.3f} | {r['temperature']:.2f} | {r['teacher_ece']:.3f} | {100 * r['agree_transfer']:.1f} | "
              f"{100 * r['agree_test']:.1f} |" for r in records]
    if any(r["options"] for r in records):
        lines += ["", "## Which held-out set to fit the temperature on (test ECE; temperature in brackets)", "",
                  "| data | seed | student | none | labels (kept) | transfer slice vs teacher probabilities | "
                  "transfer slice vs teacher argmax | oracle (the test split) |", "|" + "---|" * 8]
        for r in records:
            o = r["options"]
            cells = [f"{o[k]['ece']:.3f} ({o[k]['temperature']:.2f})"
                     for k in ("labels", "transfer-soft", "transfer-hard", "oracle")]
            lines.append(f"| {r['data']} | {r['seed']} | {NAMES.get(r['student'], r['student'])} | "
                         f"{r['ece_before']:.3f} (1.00) | " + " | ".join(cells) + " |")
    lines += ["", "## Warnings, as `tinydistill run` prints them", ""]
    lines += [f"- {w['data']} seed {w['seed']}: `WARNING {w['warning']}`" for w in warnings] or ["- none"]
    silent = sorted({Path(r["run"]).name for r in records} - {Path(w["run"]).name for w in warnings})
    lines += ["", f"No warning in: {', '.join(silent) or '-'}."]
    recorded = recorded_warnings(a.recorded) if a.recorded else []
    if recorded:
        lines += ["", f"## Warnings on the runs recorded in {a.recorded} (MiniLM teacher; scores as recorded)", "",
                  "| data | seed | teacher | CBoW-FFN | BiLSTM | chance | warnings |", "|" + "---|" * 7]
        for r in recorded:
            sc = r["scores"]
            lines.append(f"| {r['data']} | {r['seed']} | " + " | ".join(
                f"{100 * sc[m]:.1f}" if m in sc else "-" for m in ("teacher", "cbow", "bilstm"))
                + f" | {100 * r['chance']:.1f} | " + ("<br>".join(f"`{w}`" for w in r["warnings"]) or "none") + " |")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    write_json(out.with_suffix(".json"), {"records": records, "warnings": warnings, "recorded": recorded})
    print("\n".join(lines))


if __name__ == "__main__":
    main()
