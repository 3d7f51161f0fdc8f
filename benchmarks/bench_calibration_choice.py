"""How the students' temperature was chosen (issue 17): one run folder, every candidate held-out set, test ECE.

    python benchmarks/bench_calibration_choice.py runs/old-labelslice-sst2-s0 dev

Made for a run of commit 13ccab0, whose students did not train on the teacher's labelled texts (so that a
temperature fitted on those could be compared). For each student it fits the temperature on:
- `labels the teacher trained on`: the run's labelled texts (held out of the student), gold labels;
- `dev N`: N texts of a labelled split that neither model saw (`SPLIT`, e.g. SST-2's dev), gold labels;
- `transfer soft` / `transfer hard`: the transfer slice training held out for model selection, against the
  teacher's probabilities / argmax; `soft x teacher T`: against the teacher's probabilities at the temperature
  that fits the teacher on the dev split;
- `oracle`: the test split itself (the best a single temperature can do);
and prints each one's test ECE. The teacher's logits on the dev split are computed (and cached) once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from tinydistill import data as data_mod
from tinydistill.config import RunConfig
from tinydistill.distill import TrainConfig
from tinydistill.evaluate import ece, fit_temperature
from tinydistill.folders import logit_cache_path
from tinydistill.logitcache import LogitCache
from tinydistill.runtime import softmax
from tinydistill.students import Student
from tinydistill.task import load_task
from tinydistill.teacher import Teacher


def main(run: Path, split: str) -> None:
    c = RunConfig(**json.loads((run / "results.json").read_text())["config"])
    task = load_task(c)
    teacher, cache = Teacher.from_pretrained(run / "teacher"), LogitCache(logit_cache_path())
    gold = np.asarray(task.test.labels)
    dev = data_mod.load_paper_dataset(c.data, split, c.data_dir)
    dev_gold = np.asarray(dev.labels)
    # commit 13ccab0 held out min(labels, 500, transfer / 5) labelled texts, drawn by default_rng(seed)
    n = min(len(task.labeled), 500, len(task.transfer) // 5)
    pick = np.sort(np.random.default_rng(c.seed).choice(len(task.labeled), n, replace=False))
    cal_texts, cal_gold = [task.labeled.texts[i] for i in pick], np.asarray(task.labeled.labels)[pick]
    held = set(cal_texts)
    texts = [t for t in task.transfer if t not in held]
    t_logits = teacher.logits(texts, cache=cache, progress=False)
    train = TrainConfig(seed=c.seed)
    val = np.random.default_rng(c.seed).permutation(len(texts))[:min(int(len(texts) * train.val_fraction),
                                                                       train.val_max)]
    t_test, t_dev = (teacher.logits(x, cache=cache, progress=False) for x in (task.test.texts, dev.texts))
    t_temp = fit_temperature(t_dev, dev_gold)
    print(f"teacher: ECE {ece(gold, softmax(t_test)):.3f}; with the temperature of the {split} split "
          f"({t_temp:.2f}): {ece(gold, softmax(t_test, t_temp)):.3f}")
    rng = np.random.default_rng(0)
    for name in c.students:
        student = Student.from_pretrained(run / "students" / name)
        z, z_dev, z_val = (student.logits(x) for x in (task.test.texts, dev.texts, [texts[i] for i in val]))
        temps = {"none": 1.0, "labels the teacher trained on": fit_temperature(student.logits(cal_texts), cal_gold)}
        for size in (200, 500, len(dev_gold)):
            some = rng.choice(len(dev_gold), min(size, len(dev_gold)), replace=False)
            temps[f"{split} {len(some)}"] = fit_temperature(z_dev[some], dev_gold[some])
        temps["transfer soft"] = fit_temperature(z_val, softmax(t_logits[val]))
        temps["transfer hard"] = fit_temperature(z_val, t_logits[val].argmax(1))
        temps["transfer soft x teacher T"] = fit_temperature(z_val, softmax(t_logits[val], t_temp))
        temps["oracle (test)"] = fit_temperature(z, gold)
        for option, t in temps.items():
            print(f"| {name} | {option} | {t:.2f} | {ece(gold, softmax(z, t)):.3f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
