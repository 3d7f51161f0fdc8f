"""The whole job: labels -> teacher -> transfer-set logits -> students (+ NoDs twins) -> results table.

Each stage writes into the run folder and is skipped on a rerun when its output is already there with
the same settings, so a killed run resumes where it stopped. `RunConfig.device` puts the teacher on a GPU,
`label_precision="int8"` labels on the CPU in int8 where a check on labelled texts allows it, and the results
say which device and precision produced each artefact.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import shlex
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from tinydistill import data as data_mod
from tinydistill import runtime
from tinydistill.bases import load_glove
from tinydistill.cards import stamp, update_provenance
from tinydistill.config import RunConfig
from tinydistill.device import int8_guard, precision_name, resolve_device
from tinydistill.distill import TrainConfig
from tinydistill.errors import TinyDistillError
from tinydistill.evaluate import agreement, chance, ece, headline, latency, scores, throughput
from tinydistill.finetune import Recipe, get_recipe, self_train, train_teacher
from tinydistill.folders import RUN_MARKER, cache_root, check_out, locked, logit_cache_path, write_atomic
from tinydistill.logitcache import LogitCache
from tinydistill.pools import read_pool
from tinydistill.runtime import softmax
from tinydistill.shards import ConcatLogits, InMemoryLogits, LogitShards, is_logit_folder
from tinydistill.students import ARCHITECTURES, Student
from tinydistill.teacher import Teacher

log = logging.getLogger(__name__)


@dataclass
class Task:
    """The data of one run: the labels the teacher sees, the unlabelled transfer set, the test split."""

    labeled: data_mod.Split
    transfer: list[str]
    test: data_mod.Split
    metric: str
    shards: list[str] = field(default_factory=list)  # logit shard folders (`label --out DIR`), streamed by `run`
    spare: data_mod.Split | None = None  # labelled training texts outside `labeled`: the teacher never sees them


def load_task(c: RunConfig, transfer: bool = True) -> Task:
    """Load and check the data named by the config; errors name the file, line or column.

    `transfer=False` skips the unlabelled splits and pools (a teacher alone needs none): the transfer set is
    then the training split's texts (what a self-training teacher draws from)."""
    if c.data in data_mod.PAPER_DATASETS:
        spec = data_mod.PAPER_DATASETS[c.data]
        train = data_mod.load_paper_dataset(c.data, spec.train, c.data_dir)
        test = (data_mod.load(c.test, None, c.data_dir, c.text_column, c.label_column, train.label_names)
                if c.test and Path(c.test).suffix else data_mod.load_paper_dataset(c.data, c.test or spec.test,
                                                                                     c.data_dir))
        extra = [t for s in spec.unlabeled if transfer
                 for t in data_mod.load_paper_dataset(c.data, s, c.data_dir).texts]
        metric, size = spec.metric, spec.labeled if c.labeled is None else c.labeled
    else:
        train = data_mod.load(c.data, "train", c.data_dir, c.text_column, c.label_column)
        if c.test:
            test = data_mod.load(c.test, c.test if not Path(c.test).suffix else None, c.data_dir,
                                 c.text_column, c.label_column, train.label_names)
        else:
            if train.labels is None:
                raise TinyDistillError(f"{train.source}: no labels")
            test, train = data_mod.stratified_sample(train, max(len(train) // 5, len(set(train.labels))), c.seed)
            log.info("no --test given: holding out %d of %s for testing", len(test), train.source)
        extra, metric = [], "f1"
        size = len(train) if c.labeled is None else c.labeled
    data_mod.check_trainable(train)
    data_mod.check_every_class(train)
    test = data_mod.align_labels(test, train.label_names)
    if c.test_size is not None and c.test_size < len(test):
        test = data_mod.stratified_sample(test, c.test_size, 0)[0]
    labeled, spare = (train, None) if size == len(train) else data_mod.stratified_sample(train, size, c.seed)
    data_mod.check_trainable(labeled)
    texts = list(train.texts) + extra
    logit_folders = []
    for source in c.transfer if transfer else ():
        if is_logit_folder(source):  # labelled already: `run` streams them when its teacher wrote them
            logit_folders.append(source)
            continue
        texts += read_transfer(source, c.text_column)
    if c.transfer_size is not None and c.transfer_size < len(texts):
        keep = np.sort(np.random.default_rng(c.seed).choice(len(texts), c.transfer_size, replace=False))
        texts = [texts[i] for i in keep]
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise TinyDistillError(f"{train.source}: the transfer set is empty")
    return Task(labeled, texts, test, metric, shards=logit_folders, spare=spare)


def read_transfer(source: str, text_column: str = "text") -> list[str]:
    """Unlabelled texts from an augmentation pool folder, a plain text file (one text a line) or a
    CSV/TSV/JSONL/Parquet file (its `text_column`)."""
    path = Path(source)
    if is_logit_folder(source):
        return list(LogitShards(source).iter_texts())
    if path.is_dir():
        return read_pool(path)
    if not path.exists():
        raise TinyDistillError(f"{path}: transfer file not found")
    if path.name.endswith((".txt", ".txt.gz")):  # plain text: one text a line
        opener = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rt", encoding="utf-8") as handle:  # type: ignore[operator]
                return [line.rstrip("\n") for line in handle if line.strip()]
        except UnicodeDecodeError as exc:
            raise TinyDistillError(f"{path}: not UTF-8 text (byte {exc.start}); re-save it as UTF-8") from None
        except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
            raise TinyDistillError(f"{path}: not a readable {'gzip' if path.suffix == '.gz' else 'text'} file "
                                   f"({exc})") from None
    return data_mod.load_file(path, text_column=text_column, label_column=None).texts


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
                                recipe, progress=progress, device=device)
    teacher.info["key"] = key
    for place in [p for p in (folder, shared) if p is not None]:
        teacher.save_pretrained(place)
    return teacher


def choose_labeller(c: RunConfig, teacher: Teacher, task: Task, cache: LogitCache | None) -> tuple[Teacher, dict]:
    """The teacher that labels the transfer and test texts, and the record of that choice.

    `c.label_precision="int8"` on the CPU: the int8 teacher, when `device.int8_guard` finds it within half a
    point of fp32's accuracy on the held-out part of the labels (a recipe with `val_fraction`) or else on a
    sample of the labelled texts; never the test split. On a GPU the teacher labels in its autocast precision.
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
    labeled, where = task.labeled, "labelled texts"
    n_val = int(round(len(labeled) * recipe.val_fraction))
    if n_val >= len(set(labeled.labels or [])) and n_val > 0:  # the slice `finetune._train` held out, made alike
        labeled, where = data_mod.stratified_sample(labeled, n_val, recipe.seed)[0], "held-out labels"
    chosen, decision = int8_guard(teacher, labeled.texts, labeled.labels or [], cache, seed=c.seed, where=where)
    return chosen, {**record, **decision}


def word_vectors(use: bool):
    """GloVe vectors to start the students' embeddings from, when wanted and installed.

    The paper learns the CBoW's 16-d embedding from scratch; starting from GloVe's top 16 principal directions
    measured better here (emotion/1000: 77.8 against 73.7 macro-F1, seed 0).
    """
    if not use:
        return None
    try:
        return load_glove()
    except TinyDistillError as exc:
        log.warning("no GloVe vectors (%s); embeddings start random", exc)
        return None


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


CALIBRATION_MAX = 500  # held-out texts on which the students' temperature is fitted (kept out of their training)
CALIBRATION_MIN = 20  # fewer than this: no temperature is fitted (it stays 1)
AGREEMENT_MAX = 10_000  # transfer texts (a seeded sample) on which agreement with the teacher is measured


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


def run(c: RunConfig, progress: bool = True, overwrite: bool = False) -> dict:
    """Run every stage and return the results (also written to `<run>/results.json` and `results.md`).

    The run folder is refused when it exists and is not a run folder (unless `overwrite`); two runs on one
    folder take turns (a lock file), the second reusing what the first wrote."""
    for s in c.students:
        if s not in ARCHITECTURES:
            raise TinyDistillError(f"unknown student {s!r}; expected some of {sorted(ARCHITECTURES)}")
    check_out(c.run_dir(), "run", overwrite)
    task = load_task(c)
    run_dir = c.run_dir()
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
    streamed = []
    for folder in task.shards:
        shards = LogitShards(folder)
        if shards.manifest["teacher"]["fingerprint"] == teacher.fingerprint:
            streamed.append(shards)
        else:  # another teacher's logits: only its texts are of use, labelled here in memory
            log.warning("%s holds another teacher's logits; labelling its %d texts again", folder, len(shards))
            task.transfer += [t for t in shards.iter_texts() if t.strip()]
    cache = LogitCache(logit_cache_path())
    labeller, labelling = choose_labeller(c, teacher, task, cache)
    transfer_logits = labeller.logits(task.transfer, cache=cache, progress=progress)
    n_classes = len(task.labeled.label_names)
    gold = np.asarray(task.test.labels)

    teacher_test = labeller.logits(task.test.texts, cache=cache, progress=progress)
    teacher_pred = teacher_test.argmax(1)
    rows: list[dict[str, Any]] = [{"model": f"teacher ({c.teacher})", "params": teacher.n_parameters(),
             **scores(gold, teacher_pred, n_classes), "ece": ece(gold, softmax(teacher_test)),
             "training": teacher.info.get("training")}]
    models: dict[str, Student] = {}
    train_cfg = TrainConfig(loss=c.loss, seed=c.seed, device=str(resolve_device(c.student_device)))
    cal_texts, cal_target, cal_method = calibration_split(task, transfer_logits, c.seed)
    held = set(cal_texts)
    keep = [i for i, t in enumerate(task.transfer) if t not in held]  # the students' transfer texts
    student_texts, student_logits = [task.transfer[i] for i in keep], transfer_logits[keep]
    log.info("calibration: %d held-out texts (%s), %d of the %d transfer texts left for the students",
             len(cal_texts), CALIBRATION_METHODS[cal_method], len(student_texts), len(task.transfer))
    # fp32 on the CPU: the teacher's fingerprint, as before devices and shards
    transfer_key = digest(labeller.logit_key, task.transfer, cal_texts, *[s.manifest["shards"] for s in streamed])
    vectors = word_vectors(c.glove)
    for name in c.students:
        key = digest(name, train_cfg.to_dict(), transfer_key, vectors is not None, "calibrated")
        if streamed:  # shard folders join the transfer set block by block (distill.fit_stream), never in memory
            source = ConcatLogits([InMemoryLogits(student_texts, student_logits), *streamed])
            models[name] = get_student(name, run_dir / "students" / name, key, lambda: calibrated(Student(
                name, train=train_cfg, vectors=vectors).fit_source(source, task.labeled.label_names, progress),
                cal_texts, cal_target))
        else:
            models[name] = get_student(name, run_dir / "students" / name, key, lambda: calibrated(Student(
                name, train=train_cfg, vectors=vectors).fit(student_texts, student_logits, task.labeled.label_names,
                                                            progress=progress), cal_texts, cal_target))
        if c.nods:
            nods_key = digest(name, train_cfg.to_dict(), task.labeled.texts, task.labeled.labels, vectors is not None)
            models[f"{name}-nods"] = get_student(
                f"{name}-nods", run_dir / "students" / f"{name}-nods", nods_key,
                lambda: Student(name, train=train_cfg, vectors=vectors).fit(
                    task.labeled.texts, np.asarray(task.labeled.label_names)[task.labeled.labels or []],
                    task.labeled.label_names, vocab_texts=task.transfer, progress=progress))
    sample = np.sort(np.random.default_rng(c.seed).permutation(len(keep))[:AGREEMENT_MAX])
    seen_texts, seen_teacher = [student_texts[i] for i in sample], student_logits[sample].argmax(1)
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

    if c.speed:
        measure_speed(rows, teacher, models, task.test.texts, run_dir / "students")
    teacher_params = rows[0]["params"]
    for row in rows:
        row["compression"] = teacher_params / row["params"]
        row["headline"] = headline(task.metric, row)
    results = {"config": asdict(c), "metric": task.metric, "sizes": {
        "labeled": len(task.labeled), "transfer": len(task.transfer) + sum(len(s) for s in streamed),
        "test": len(task.test), "calibration": len(cal_texts)},
        "test_split": task.test.source, "rows": rows,
        "calibration": {"method": cal_method, "texts": len(cal_texts), "about": CALIBRATION_METHODS[cal_method]},
        "chance": chance(task.metric, gold, n_classes), "chance_accuracy": chance("accuracy", gold, n_classes),
        "hardware": {"teacher_training": {k: (teacher.info.get("training") or {}).get(k, default) for k, default in
                                          (("device", "cpu"), ("precision", "fp32"))},
                     "labelling": labelling, "students": train_cfg.device}}
    warnings = warnings_for(results)
    for line in warnings:
        log.warning(line)
    results["warnings"] = warnings
    results["seconds"] = round(time.time() - started, 1)
    results["command"] = command_line(c)
    write_json(run_dir / "results.json", results)
    write_atomic(run_dir / "results.md", format_table(results) + "\n")
    record_provenance(c, task, results, run_dir, list(models))
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
    teacher = train_teacher(c.teacher, task.labeled.texts, task.labeled.labels or [], task.labeled.label_names,
                            recipe, progress=progress, pool=task.transfer, device=on)
    teacher.save_pretrained(out, overwrite=overwrite)
    spec = data_mod.PAPER_DATASETS.get(c.data)
    update_provenance(out, {**stamp(), "method": "fine-tuned teacher", "teacher": c.teacher, "recipe": c.recipe,
                            "data": c.data, "language": "en" if spec else None,
                            "dataset_id": spec.hub_id if spec else None, "labeled": len(task.labeled),
                            "classes": len(task.labeled.label_names), "params": teacher.n_parameters(),
                            "command": command})
    return {"teacher": out, **teacher.info["training"]}


def evaluate_folder(folder: str | os.PathLike, c: RunConfig) -> dict:
    """`tinydistill evaluate`: a saved student's or teacher's scores on the test split that `c` names."""
    task = load_task(c, transfer=False)
    folder = Path(folder)
    model = Teacher.from_pretrained(folder) if (folder / "teacher.json").exists() else Student.from_pretrained(folder)
    names = [str(c) for c in model.classes_.tolist()]
    test = data_mod.align_labels(task.test, names)
    pred = model.logits(test.texts).argmax(1)  # class indices, as the gold labels are
    return {"model": str(folder), "test": test.source, **scores(test.labels or [], pred, len(names))}


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
    for name, row in zip(names, rows[1:]):
        nods = name.endswith("-nods")
        update_provenance(run_dir / "students" / name, {
            **common, "method": "labels only (NoDs)" if nods else "distilled", "teacher_params": teacher["params"],
            "transfer": None if nods else len(task.transfer), "scores": _card_scores(row, metric, test),
            "teacher_scores": _card_scores(teacher, metric, test), "agreement": row.get("agree_test"),
            "agreement_transfer": row.get("agree_transfer"), "temperature": row.get("temperature"),
            "params": row["params"], "texts_per_s": row.get("texts_per_s"), "latency_ms": row.get("latency_ms")})


CALIBRATION_METHODS = {
    "labels": "labelled texts that neither the teacher nor the students trained on, against their gold labels",
    "teacher": "transfer texts the students did not train on, against the teacher's probabilities",
    "none": "too few texts to hold out: temperature 1"}


def calibrated(student: Student, texts: list[str], target: np.ndarray) -> Student:
    """The student with its temperature fitted on `texts` (held out of its training) and their `target`."""
    if texts:
        student.calibrate(texts, target)
        log.info("%s: temperature %.2f (fitted on %d held-out texts)", student.model_type, student.temperature_,
                 len(texts))
    return student


def unknown_rate(student: Student, texts: list[str]) -> float:
    """Share of the word tokens of `texts` (as far as the student reads them) that are not in its vocabulary."""
    ids = student.vocab_.encode_batch(texts)
    total = sum(len(x) for x in ids)
    return sum(int(np.count_nonzero(np.asarray(x) == 1)) for x in ids) / max(total, 1)


HINTS = {"bilstm": "the BiLSTM student (--students bilstm)",
         "transfer": "more transfer text (tinydistill augment --data DATA --out POOL, then run with --transfer POOL)",
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
        out.append(f"the teacher scores {what}, within 5 points of chance: its students cannot learn what it does "
                   f"not know; what usually helps: {HINTS['teacher']} or more labels")
    for row in results["rows"][1:]:
        gap = teacher["headline"] - row["headline"]
        if row["model"].endswith("-nods") or gap <= 0.03:
            continue
        hints = [HINTS[k] for k in ("bilstm", "transfer", "teacher") if k != row["model"]]
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


def write_json(path: Path, obj: dict) -> None:
    write_atomic(path, json.dumps(obj, indent=2, default=float))


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
    lines.append(f"\n{s['labeled']} labels, {s['transfer']:,} transfer texts, {s['test']:,} test texts "
                 f"({results['test_split']}); {results['seconds']:.0f} s")
    if s.get("calibration"):
        about = results.get("calibration", {}).get("about", "held-out texts")
        lines.append(f"ECE: expected calibration error on the test texts (15 bins); calibrated: with the temperature "
                     f"fitted on {s['calibration']} {about}. Agreement "
                     "with the teacher (%) on the transfer texts the student trained on and on the test texts; "
                     "unknown words: % of the test texts' words not in the student's vocabulary.")
    lines += [f"\nwarning: {w}" for w in results.get("warnings", [])]
    return "\n".join(lines)
