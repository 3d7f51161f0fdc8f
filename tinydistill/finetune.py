"""Fine-tuning a teacher on a few labels: the named recipes and the training loops.

`train_teacher` turns a base encoder and labelled texts into a `Teacher`. A recipe is plain cross-entropy
fine-tuning of encoder and head (`strong`, the default; `paper`), optionally with an early-stopping slice,
an ensemble of seeds, a second round on pool texts it labels surest (`self-train`), or a contrastive stage
on the encoder followed by a head on frozen embeddings (`contrastive`). Training is deterministic for a seed,
shows progress and reports steps, seconds and the held-out score in `teacher.info["training"]`. With a GPU
`device` the forward passes run under autocast (bf16, or fp16 with a gradient scaler; `tinydistill.device`) and
the report says which device and precision trained the teacher.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from tinydistill.bases import resolve_teacher
from tinydistill.device import autocast, grad_scaler, torch_threads
from tinydistill.errors import TinyDistillError, check_number
from tinydistill.teacher import Classifier, Teacher, check_tokenizer_files

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- recipes


@dataclass
class Recipe:
    """How to fine-tune the teacher."""

    epochs: float = 3  # upper bound on passes over the labels
    lr: float = 5e-5
    batch_size: int = 16
    max_length: int = 128  # tokens per text; longer texts are truncated
    warmup: float = 0.0  # fraction of steps with a linear warm-up
    weight_decay: float = 0.01
    min_steps: int = 0  # at least this many optimiser steps, however few the labels
    val_fraction: float = 0.0  # labels held out for early stopping (0: none, train on all)
    patience: int = 3  # evaluations without improvement before stopping
    pooling: str = "cls"  # "cls" token or "mean" of token states (sentence-embedding models are trained so)
    head_lr: float | None = None  # a separate, larger learning rate for the fresh head
    members: int = 1  # fine-tune this many teachers (seeds seed, seed+1, ...) on the same labels; average logits
    self_train: int = 0  # then again from the base on the labels + this many pool texts the first is surest of
    contrastive: int = 0  # steps of a contrastive (SetFit-style) stage on the encoder; then only the head is fit
    seed: int = 0
    threads: int | None = None  # torch intra-op threads while training (None: torch's default, all cores)

    def __post_init__(self) -> None:
        check_number("teacher epochs", self.epochs, minimum=0)
        check_number("teacher learning rate", self.lr, above=0)
        check_number("head learning rate", self.head_lr, above=0, optional=True)
        check_number("teacher batch size", self.batch_size, "int", minimum=1)
        if not isinstance(self.max_length, int) or isinstance(self.max_length, bool) or self.max_length < 2:
            raise TinyDistillError(f"max length {self.max_length}: expected at least 2 tokens a text "
                                   "(the encoder's start and end markers take two)")
        check_number("warmup", self.warmup, minimum=0, below=1)
        check_number("weight decay", self.weight_decay, minimum=0)
        check_number("val_fraction", self.val_fraction, minimum=0, below=1)
        for name in ("min_steps", "self_train", "contrastive", "seed"):
            check_number(name, getattr(self, name), "int", minimum=0)
        for name in ("patience", "members"):
            check_number(name, getattr(self, name), "int", minimum=1)
        check_number("threads", self.threads, "int", minimum=1, optional=True)
        if self.pooling not in ("cls", "mean"):
            raise TinyDistillError(f"pooling {self.pooling!r}: expected 'cls' or 'mean'")
        if self.epochs == 0 and self.min_steps == 0 and self.contrastive == 0:
            raise TinyDistillError("teacher epochs 0 with no min_steps: the teacher would not train at all")

    def to_dict(self) -> dict:
        d = asdict(self)
        for name, off in (("members", 1), ("self_train", 0), ("contrastive", 0)):  # off: older recipes' cache keys hold
            if d[name] == off:
                del d[name]
        return d

    def to_info(self) -> dict:
        """The recipe as a teacher records it: without `threads`, which changes no result."""
        return {k: v for k, v in self.to_dict().items() if k != "threads"}


RECIPES: dict[str, Recipe] = {
    # the paper's section 3.2: 3 epochs, lr 5e-5, batch 16
    "paper": Recipe(),
    # measured to be strong on 50-1000 labels on a CPU (see the README's teacher table)
    "strong": Recipe(epochs=10, lr=1e-4, batch_size=16, warmup=0.1, min_steps=300, val_fraction=0.0,
                     pooling="mean", head_lr=1e-3),
    # the same, holding a fifth of the labels out and keeping the best checkpoint on them (a lever of issue 6)
    "strong-early-stop": Recipe(epochs=10, lr=1e-4, batch_size=16, warmup=0.1, min_steps=300, val_fraction=0.2,
                                patience=3, pooling="mean", head_lr=1e-3),
    # three "strong" teachers from seeds s, s+1, s+2 on the same labels, their logits averaged (a lever of issue 6)
    "ensemble": Recipe(epochs=10, lr=1e-4, batch_size=16, warmup=0.1, min_steps=300, val_fraction=0.0,
                       pooling="mean", head_lr=1e-3, members=3),
    # "strong", then again from the base with 1000 pool texts it labels most surely added (a lever of issue 6)
    "self-train": Recipe(epochs=10, lr=1e-4, batch_size=16, warmup=0.1, min_steps=300, val_fraction=0.0,
                         pooling="mean", head_lr=1e-3, self_train=1000),
    # 200 steps pulling same-label texts together and others apart (lr 2e-5, pairs from batches of 32), then a
    # linear head on the frozen embeddings: SetFit's idea (a lever of issue 6)
    "contrastive": Recipe(epochs=0, lr=2e-5, batch_size=16, warmup=0.1, pooling="mean", contrastive=200),
}
DEFAULT_RECIPE = "strong"
CHECKPOINT_EVERY = 600.0  # seconds of fine-tuning between two saves of its state (`Checkpoint`)


def get_recipe(name: str, **overrides) -> Recipe:
    if name not in RECIPES:
        raise TinyDistillError(f"unknown recipe {name!r}; expected one of {sorted(RECIPES)}")
    return replace(RECIPES[name], **{k: v for k, v in overrides.items() if v is not None})


# ------------------------------------------------------------------------------------------ training


def _set_seed(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_teacher(base: str, texts: Sequence[str], labels: Sequence[int], label_names: Sequence[str],
                  recipe: Recipe | None = None, progress: bool = True, pool: Sequence[str] = (),
                  device: str | torch.device | None = None, checkpoint: str | os.PathLike | None = None,
                  checkpoint_every: float | None = None) -> Teacher:
    """Fine-tune `base` (a short name, folder or hub id) on labelled texts; returns the teacher.

    With `recipe.val_fraction` > 0 a stratified slice of the labels is held out and the best checkpoint on
    it is kept; the report (steps, seconds, held-out accuracy) is in `teacher.info["training"]`. With
    `recipe.members` > 1 that many teachers are fine-tuned from consecutive seeds and averaged (`Committee`);
    with `recipe.self_train` > 0 and unlabelled `pool` texts, see `self_train`; with `recipe.contrastive` > 0
    the encoder first gets that many contrastive steps (`_contrast`) and only the head is then fit (`_fit_head`).
    `device` is a `device.resolve_device` spec (None: the CPU, in fp32 as always).

    With a `checkpoint` folder, the fine-tuning's state is saved there every `checkpoint_every` seconds (None:
    `CHECKPOINT_EVERY`) and a training of the same base, labels and recipe resumes from it (`Checkpoint`; an
    ensemble's members in member-<k>/; self-training's second round and the contrastive stage are not
    checkpointed). Remove the folder once the teacher is saved.
    """
    recipe = recipe or RECIPES[DEFAULT_RECIPE]
    if recipe.members > 1:
        members = [train_teacher(base, texts, labels, label_names, replace(recipe, members=1, seed=recipe.seed + k),
                                 progress, pool, device,
                                 None if checkpoint is None else Path(checkpoint) / f"member-{k}", checkpoint_every)
                   for k in range(recipe.members)]
        return Teacher.committee(members, recipe.to_info()).to(members[0].device)  # where the members are
    first = replace(recipe, self_train=0)
    saver = None if checkpoint is None else Checkpoint(
        checkpoint, checkpoint_key(base, texts, labels, label_names, first, device),
        CHECKPOINT_EVERY if checkpoint_every is None else checkpoint_every)
    with torch_threads(recipe.threads or torch.get_num_threads()):
        teacher = _train(base, texts, labels, label_names, first, progress, device, saver)
    if recipe.self_train > 0 and pool:
        teacher = self_train(teacher, base, texts, labels, label_names, pool, recipe, progress, device)
    return teacher


def self_train(first: Teacher, base: str, texts: Sequence[str], labels: Sequence[int], label_names: Sequence[str],
               pool: Sequence[str], recipe: Recipe, progress: bool = True,
               device: str | torch.device | None = None) -> Teacher:
    """Fine-tune again from `base`, for as many steps, on the labels plus pool texts `first` labelled surest.

    `first` is the teacher `recipe` (without self-training) made from these labels. A seeded sample of at most
    5 x `recipe.self_train` pool texts is scored; each class then takes up to an equal share of
    `recipe.self_train` of the texts predicted as it, highest probability first.
    """
    with torch_threads(recipe.threads or torch.get_num_threads()):
        return _self_train(first, base, texts, labels, label_names, pool, recipe, progress, device)


def _self_train(first: Teacher, base: str, texts: Sequence[str], labels: Sequence[int], label_names: Sequence[str],
                pool: Sequence[str], recipe: Recipe, progress: bool,
                device: str | torch.device | None = None) -> Teacher:
    started, seen = time.time(), set(texts)
    candidates = [t for t in dict.fromkeys(pool) if t not in seen and t.strip()]
    if not candidates:
        log.warning("self-training: no unlabelled texts beyond the labels; keeping the first teacher")
        return first
    rng = np.random.default_rng(recipe.seed)
    take = min(len(candidates), 5 * recipe.self_train)
    sample = [candidates[i] for i in np.sort(rng.choice(len(candidates), take, replace=False))]
    probs = first.predict_proba(sample, 64, progress=progress)
    share = recipe.self_train // len(label_names)
    picked: list[tuple[str, int]] = []
    for k in range(len(label_names)):
        rows = np.flatnonzero(probs.argmax(1) == k)
        picked += [(sample[i], k) for i in rows[np.argsort(-probs[rows, k], kind="stable")][:share]]
    steps = first.info["training"]["steps"]
    second = _train(base, [*texts, *(t for t, _ in picked)], [*labels, *(k for _, k in picked)], label_names,
                    replace(recipe, self_train=0, epochs=0, min_steps=steps), progress, device)
    second.info["recipe"] = recipe.to_info()
    report = second.info["training"]
    report["self_train"] = {"pool_scored": len(sample), "pseudo_labelled": len(picked), "first": first.info["training"]}
    report["seconds"] = round(time.time() - started + first.info["training"]["seconds"], 1)
    return second


def _train(base: str, texts: Sequence[str], labels: Sequence[int], label_names: Sequence[str], recipe: Recipe,
           progress: bool, device: str | torch.device | None = None, checkpoint: Checkpoint | None = None) -> Teacher:
    from transformers import AutoModel, AutoTokenizer

    from tinydistill.data import Split, stratified_sample
    from tinydistill.device import resolve_device

    _set_seed(recipe.seed)
    path = resolve_teacher(base)
    check_tokenizer_files(Path(path))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        encoder = AutoModel.from_pretrained(path)
    except (OSError, ValueError, KeyError) as exc:  # no such folder or id, no tokenizer, an unknown model type
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TinyDistillError(f"teacher {base!r}: could not load ({first})") from None
    model = Classifier(encoder, len(label_names), recipe.pooling)
    teacher = Teacher(model, tokenizer, label_names, recipe.max_length, {"base": base, "recipe": recipe.to_info()})
    teacher.to(resolve_device(device or "cpu"))

    texts, labels = list(texts), list(labels)
    val_texts: list[str] = []
    val_labels: list[int] = []
    n_val = int(round(len(texts) * recipe.val_fraction))
    if n_val >= len(set(labels)):
        held, rest = stratified_sample(Split(texts, labels, list(label_names), "labels"), n_val, recipe.seed)
        val_texts, val_labels = held.texts, held.labels or []
        texts, labels = rest.texts, rest.labels or []

    started = time.time()
    if recipe.contrastive:
        _contrast(model, teacher, texts, labels, recipe, progress)
        _fit_head(model, teacher, texts, labels)
        step = recipe.contrastive
        best = (_accuracy(teacher, val_texts, val_labels), step)
    else:
        step, best = _fine_tune(model, teacher, texts, labels, val_texts, val_labels, recipe, progress, checkpoint)
    model.eval()
    before = checkpoint.seconds_before if checkpoint is not None else 0.0
    resumed = {"resumed_at_step": checkpoint.resumed_at} if checkpoint is not None and checkpoint.resumed_at else {}
    report = {"steps": step, "best_step": best[1] if val_texts else step,
              "seconds": round(time.time() - started + before, 1), "threads": torch.get_num_threads(),
              **resumed,
              "labels_trained": len(texts), "labels_held_out": len(val_texts),
              "held_out_accuracy": best[0] if val_texts else None,
              "device": str(teacher.device), "precision": teacher.precision}
    teacher.info["training"] = report
    log.info("teacher %s: %s", base, report)
    return teacher


def _accuracy(teacher: Teacher, texts: Sequence[str], labels: Sequence[int]) -> float:
    if not texts:
        return -1.0
    return float((teacher.logits(texts, 64, progress=False).argmax(1) == np.array(labels)).mean())


def _fine_tune(model: Classifier, teacher: Teacher, texts: list[str], labels: list[int], val_texts: list[str],
               val_labels: list[int], recipe: Recipe, progress: bool,
               checkpoint: Checkpoint | None = None) -> tuple[int, tuple[float, int]]:
    """Encoder and head together on cross-entropy; with held-out labels, the best checkpoint on them is kept.
    With a `checkpoint`, training resumes from it when it holds this training's state, and saves to it as due.

    Returns the steps taken and (best held-out accuracy, its step)."""
    steps_per_epoch = math.ceil(len(texts) / recipe.batch_size)
    total = max(math.ceil(recipe.epochs * steps_per_epoch), recipe.min_steps)
    head_lr = recipe.head_lr or recipe.lr
    groups = [{"params": model.encoder.parameters(), "lr": recipe.lr},
              {"params": model.head.parameters(), "lr": head_lr}]
    optimiser = torch.optim.AdamW(groups, weight_decay=recipe.weight_decay)
    schedule = _schedule(optimiser, total, recipe.warmup)
    rng = np.random.default_rng(recipe.seed)
    y = torch.tensor(labels).to(teacher.device)
    scaler = grad_scaler(teacher.device)
    eval_every = max(steps_per_epoch, 25)
    loop = Loop()
    if checkpoint is not None:
        loop = checkpoint.load(model, optimiser, schedule, scaler, rng) or loop
    bar = tqdm(total=total, initial=loop.step, desc=f"teacher {teacher.info['base']}", disable=not progress,
               unit="step")
    model.train()
    while loop.step < total and loop.since_best < recipe.patience:
        if loop.start >= len(loop.perm):  # an epoch begins: a fresh order of the labels
            loop.perm, loop.start = rng.permutation(len(texts)), 0
        rows = loop.perm[loop.start: loop.start + recipe.batch_size]
        loop.start += recipe.batch_size
        enc = teacher.encode([texts[i] for i in rows])
        with autocast(teacher.device):
            loss = nn.functional.cross_entropy(model(enc["input_ids"], enc["attention_mask"]), y[rows])
        _step(loss, model, optimiser, schedule, scaler)
        loop.step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        if val_texts and (loop.step % eval_every == 0 or loop.step == total):
            acc = _accuracy(teacher, val_texts, val_labels)
            model.train()
            if acc > loop.best[0]:
                loop.best = (acc, loop.step, {k: v.clone() for k, v in model.state_dict().items()})
                loop.since_best = 0
            else:
                loop.since_best += 1
        if checkpoint is not None and checkpoint.due() and loop.step < total:
            checkpoint.save(model, optimiser, schedule, scaler, rng, loop)
    bar.close()
    if loop.best[2] is not None:
        model.load_state_dict(loop.best[2])
    return loop.step, (loop.best[0], loop.best[1])


# ------------------------------------------------------------------------------------ resumable training

@dataclass
class Loop:
    """Where a fine-tuning loop is: steps taken, this epoch's order of the labels and the next batch's start in
    it, the best held-out (accuracy, step, weights) so far and the evaluations since."""
    step: int = 0
    perm: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    start: int = 0
    best: tuple[float, int, dict | None] = (-1.0, 0, None)
    since_best: int = 0


class Checkpoint:
    """A fine-tuning's state saved to `folder` every `every` seconds, so that a killed run resumes there.

    The state is everything the next step depends on: weights, AdamW's moments, the schedule, the gradient
    scaler, the loop (`Loop`) and the random generators (numpy's for the order, torch's for dropout), so a
    resumed teacher equals an uninterrupted one on the CPU. Tensors go to `state.safetensors`, the rest to
    `state.json` with the tensors' sha256 and `key` (what is trained: base, recipe, labels). The folder is
    replaced atomically. A checkpoint of another key, or one that fails a check, is not used: training starts
    from the base with a one-line warning. Nothing is unpickled. The caller removes the folder once the teacher
    is saved.
    """

    def __init__(self, folder: str | os.PathLike, key: str, every: float = CHECKPOINT_EVERY):
        self.folder, self.key, self.every = Path(folder), key, every
        self.last = self.began = time.monotonic()
        self.resumed_at = 0  # the step training resumed at (0: from the base)
        self.seconds_before = 0.0  # fine-tuning seconds spent before that

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.every

    def save(self, model: nn.Module, optimiser: torch.optim.Optimizer, schedule, scaler,
             rng: np.random.Generator, loop: Loop) -> None:
        """Write the state; a failure to write is a warning (training goes on, without this checkpoint)."""
        from safetensors.torch import save_file

        from tinydistill.folders import replace_folder, sha256_file, staging

        state = optimiser.state_dict()
        tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
        tensors.update({f"optimiser/{i}/{name}": value for i, entry in state["state"].items()
                        for name, value in entry.items()})
        tensors["perm"] = torch.from_numpy(np.asarray(loop.perm, dtype=np.int64))
        tensors["rng/torch"] = torch.get_rng_state()
        device = next(model.parameters()).device
        if device.type == "cuda":
            tensors["rng/cuda"] = torch.cuda.get_rng_state(device)
        if loop.best[2] is not None:
            tensors.update({f"best/{k}": v for k, v in loop.best[2].items()})
        tmp = None
        try:
            tmp = staging(self.folder)
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp / "state.safetensors"))
            meta = {"key": self.key, "step": loop.step, "start": loop.start, "since_best": loop.since_best,
                    "best": [loop.best[0], loop.best[1]], "numpy": rng.bit_generator.state,
                    "param_groups": state["param_groups"], "schedule": schedule.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "seconds": round(self.seconds_before + time.monotonic() - self.began, 1),
                    "sha256": sha256_file(tmp / "state.safetensors")}
            (tmp / "state.json").write_text(json.dumps(meta))
            replace_folder(tmp, self.folder)
        except (OSError, ValueError, RuntimeError, TypeError, TinyDistillError) as exc:
            log.warning("teacher checkpoint %s: not saved (%s); training goes on", self.folder, exc)
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        self.last = time.monotonic()

    def load(self, model: nn.Module, optimiser: torch.optim.Optimizer, schedule, scaler,
             rng: np.random.Generator) -> Loop | None:
        """Restore the state into the freshly made model, optimiser, schedule, scaler and `rng`, and return the
        loop; None (the objects untouched) when there is no usable checkpoint of this training."""
        self.began = time.monotonic()
        if not (self.folder / "state.json").exists():
            return None
        try:
            state, tensors = self._read()
            live = model.state_dict()
            weights = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
            if {k: tuple(v.shape) for k, v in weights.items()} != {k: tuple(v.shape) for k, v in live.items()}:
                raise TinyDistillError("its weights do not fit this model")
            moments: dict[int, dict] = {}
            for name, value in tensors.items():
                if name.startswith("optimiser/"):
                    _, index, part = name.split("/", 2)
                    moments.setdefault(int(index), {})[part] = value
            params = [p for group in optimiser.param_groups for p in group["params"]]
            if any(not 0 <= i < len(params) or any(v.dim() and v.shape != params[i].shape for v in m.values())
                   for i, m in moments.items()):
                raise TinyDistillError("its optimiser state does not fit this model")
            groups = state["param_groups"]  # not under the sha256: checked here, before anything is restored
            if not isinstance(groups, list) or [len(g.get("params", ())) for g in groups if isinstance(g, dict)] \
                    != [len(g["params"]) for g in optimiser.param_groups]:
                raise TinyDistillError("its optimiser's parameter groups do not fit this model")
            model.load_state_dict(weights)
            optimiser.load_state_dict({"state": moments, "param_groups": groups})
            schedule.load_state_dict(state["schedule"])
            if scaler is not None and state["scaler"]:
                scaler.load_state_dict(state["scaler"])
            rng.bit_generator.state = state["numpy"]
            torch.set_rng_state(tensors["rng/torch"])
            device = next(model.parameters()).device
            if device.type == "cuda" and "rng/cuda" in tensors:
                torch.cuda.set_rng_state(tensors["rng/cuda"], device)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, TinyDistillError) as exc:
            log.warning("teacher checkpoint %s: not used (%s); fine-tuning from the start", self.folder,
                        str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            return None
        best = {k[len("best/"):]: v.to(device) for k, v in tensors.items() if k.startswith("best/")}
        loop = Loop(state["step"], tensors["perm"].numpy(), state["start"],
                    (state["best"][0], state["best"][1], best or None), state["since_best"])
        self.resumed_at, self.seconds_before = loop.step, float(state["seconds"])
        log.info("teacher: resuming fine-tuning at step %d from %s", loop.step, self.folder)
        return loop

    def _read(self) -> tuple[dict, dict[str, torch.Tensor]]:
        from safetensors.torch import load_file

        from tinydistill.folders import sha256_file

        state = json.loads((self.folder / "state.json").read_text())
        if not isinstance(state, dict) or state.get("key") != self.key:
            raise TinyDistillError("it is another training's (other labels, base or recipe)")
        if sha256_file(self.folder / "state.safetensors") != state.get("sha256"):
            raise TinyDistillError("state.safetensors does not match its sha256: corrupt or partly written")
        return state, load_file(str(self.folder / "state.safetensors"))


def checkpoint_key(base: str, texts: Sequence[str], labels: Sequence[int], label_names: Sequence[str],
                   recipe: Recipe, device: str | torch.device | None) -> str:
    """What a fine-tuning's checkpoint must match to be resumed: the base, labels, recipe and device."""
    parts = [base, list(texts), [int(x) for x in labels], [str(x) for x in label_names], recipe.to_dict(),
             str(device or "cpu")]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _contrast(model: Classifier, teacher: Teacher, texts: list[str], labels: list[int], recipe: Recipe,
              progress: bool) -> None:
    """SetFit's idea, with every pair of a batch: `recipe.contrastive` steps moving the cosine similarity of two
    labelled texts' pooled embeddings towards 1 when they share a label and 0 when not.

    Each step draws 2 x `recipe.batch_size` texts (a fresh permutation when one runs out); the squared error
    is averaged over same-label and other-label pairs separately and the two halves weighted equally, so a
    many-class batch, mostly other-label pairs, still pulls its few same-label pairs together."""
    size, total = 2 * recipe.batch_size, recipe.contrastive
    optimiser = torch.optim.AdamW(model.encoder.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    schedule = _schedule(optimiser, total, recipe.warmup)
    rng = np.random.default_rng(recipe.seed)
    y = torch.tensor(labels).to(teacher.device)
    scaler = grad_scaler(teacher.device)
    perm, at = rng.permutation(len(texts)), 0
    bar = tqdm(total=total, desc=f"teacher {teacher.info['base']} (contrastive)", disable=not progress, unit="step")
    model.train()
    for _ in range(total):
        if at + min(size, len(texts)) > len(perm):
            perm, at = rng.permutation(len(texts)), 0
        rows = perm[at: at + size]
        at += len(rows)
        enc = teacher.encode([texts[i] for i in rows])
        with autocast(teacher.device):
            embedded = model.embed(enc["input_ids"], enc["attention_mask"])
        unit = nn.functional.normalize(embedded.float(), dim=1)
        same = (y[rows][:, None] == y[rows][None, :]).float()
        error = (unit @ unit.T - same) ** 2
        others = 1 - torch.eye(len(rows), device=unit.device)
        halves = [(error * w).sum() / w.sum().clamp(min=1) for w in (same * others, (1 - same) * others)]
        loss = (halves[0] + halves[1]) / 2
        _step(loss, model, optimiser, schedule, scaler)
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
    bar.close()


@torch.no_grad()
def _pooled(model: Classifier, teacher: Teacher, texts: list[str]) -> torch.Tensor:
    model.eval()
    parts = []
    for start in range(0, len(texts), 64):
        enc = teacher.encode(texts[start: start + 64])
        with autocast(teacher.device):
            parts.append(model.embed(enc["input_ids"], enc["attention_mask"]).float())
    return torch.cat(parts)


def _fit_head(model: Classifier, teacher: Teacher, texts: list[str], labels: list[int], iterations: int = 500,
              l2: float = 1e-3) -> None:
    """The linear head alone on the frozen pooled embeddings of the labels: full-batch cross-entropy with an L2
    penalty on its weights (a logistic regression), as SetFit fits its head."""
    features, y = _pooled(model, teacher, texts), torch.tensor(labels).to(teacher.device)
    optimiser = torch.optim.AdamW(model.head.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(iterations):
        loss = nn.functional.cross_entropy(model.head(features), y) + l2 * model.head.weight.pow(2).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


def _schedule(optimiser: torch.optim.Optimizer, total: int, warmup: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A linear warm-up over `warmup` of the steps, then a linear decay to 0."""
    warm = int(total * warmup)
    return torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: (s + 1) / max(warm, 1) if s < warm else max(0.0, (total - s) / max(total - warm, 1)))


def _step(loss: torch.Tensor, model: nn.Module, optimiser: torch.optim.Optimizer, schedule, scaler=None) -> None:
    optimiser.zero_grad()
    if scaler is None:  # fp32 and bf16
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
    else:  # fp16: scaled so small gradients do not underflow; unscaled before clipping
        scaler.scale(loss).backward()
        scaler.unscale_(optimiser)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimiser)
        scaler.update()
    schedule.step()
