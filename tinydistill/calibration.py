"""The students' calibration: the held-out texts their temperature is fitted on, and the fit.

A run keeps these texts out of the students' transfer set (`pipeline._run`), fits each distilled student's
temperature on them after training (`calibrated`), and records how they were chosen (`CALIBRATION_METHODS`).
"""

from __future__ import annotations

import logging

import numpy as np

from tinydistill import data as data_mod
from tinydistill.runtime import softmax
from tinydistill.students import Student
from tinydistill.task import Task

log = logging.getLogger(__name__)

CALIBRATION_MAX = 500  # held-out texts on which the students' temperature is fitted (kept out of their training)
CALIBRATION_MIN = 20  # fewer than this: no temperature is fitted (it stays 1)

CALIBRATION_METHODS = {
    "labels": "labelled texts that neither the teacher nor the students trained on, against their gold labels",
    "teacher": "transfer texts the students did not train on, against the teacher's probabilities",
    "none": "too few texts to hold out: temperature 1"}


def calibration_split(task: Task, transfer_logits: np.ndarray, seed: int) -> tuple[list[str], np.ndarray, str]:
    """Held-out texts and targets on which the students' temperature is fitted, and how they were chosen.

    Students are overconfident on text they never saw, and so is a teacher fine-tuned on a few hundred labels;
    only gold labels that neither of them trained on measure how often a student is right (see
    results/calibration.md). So the texts are, when the training split has labels beyond the teacher's sample
    (`spare`): a stratified sample of `CALIBRATION_MAX` of them (at most a tenth of the transfer set's size) with
    their gold labels ("labels"). Otherwise (every label went to the teacher): a seeded slice of the transfer set
    (at most a twentieth) against the teacher's probabilities ("teacher"), the next best. The students do not
    train on these texts. Empty (no calibration) when fewer than `CALIBRATION_MIN` would be left.
    """
    n = min(CALIBRATION_MAX, len(task.transfer) // 10)
    spare = task.spare
    if spare is not None and spare.labels is not None and min(n, len(spare)) >= max(CALIBRATION_MIN,
                                                                                      len(spare.label_names)):
        sample = data_mod.stratified_sample(spare, min(n, len(spare)), seed)[0]
        return sample.texts, np.asarray(sample.labels), "labels"
    n = min(n, len(task.transfer) // 20)
    if n < CALIBRATION_MIN:
        return [], np.zeros(0), "none"
    pick = np.sort(np.random.default_rng(seed).choice(len(task.transfer), n, replace=False))
    return [task.transfer[i] for i in pick], softmax(transfer_logits[pick]), "teacher"


def calibrated(student: Student, texts: list[str], target: np.ndarray) -> Student:
    """The student with its temperature fitted on `texts` (held out of its training) and their `target`."""
    if texts:
        student.calibrate(texts, target)
        log.info("%s: temperature %.2f (fitted on %d held-out texts)", student.model_type, student.temperature_,
                 len(texts))
    return student
