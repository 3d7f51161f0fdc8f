"""Training loops for the students: distillation on teacher logits, and the NoDs baseline on hard labels.

The paper trains students with MSE between student and teacher logits only (its section 2.2). KL with
a temperature and a mix with hard labels are options. Without a labelled dev set, the best checkpoint is
the one that agrees most with the teacher on a held-out slice of the transfer set.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from tinydistill.device import resolve_device, torch_threads
from tinydistill.errors import TinyDistillError, check_number
from tinydistill.words import pad_ids

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    loss: str = "mse"  # "mse" on logits (the paper), "kl" with `temperature`; hard labels always use CE
    temperature: float = 2.0  # only for loss="kl"
    alpha: float = 0.0  # weight of cross-entropy on gold labels, where `hard` gives them (-1 = unknown)
    lr: float = 3e-3  # Adam; tiny models with few weights learn fast
    batch_size: int = 64
    epochs: int = 40  # upper bound; early stopping usually ends sooner
    min_steps: int = 600  # tiny labelled sets need more passes than epochs suggest
    max_steps: int = 40_000  # cap for million-sentence pools
    patience: int = 4  # evaluations without improvement before stopping
    val_fraction: float = 0.05  # held out for model selection (agreement with the teacher, or accuracy)
    val_max: int = 2000
    weight_decay: float = 0.0
    seed: int = 0
    threads: int = 1  # tiny matrices gain nothing from more; more threads thrash when the CPU is shared
    device: str = "cpu"  # "cuda"/"auto" trains on a GPU (a BiLSTM on a million texts); the module ends on the CPU

    def __post_init__(self) -> None:
        if self.loss not in ("mse", "kl"):
            raise TinyDistillError(f"loss {self.loss!r}: expected 'mse' or 'kl'")
        check_number("temperature", self.temperature, above=0)
        check_number("alpha", self.alpha, minimum=0, maximum=1)
        check_number("learning rate", self.lr, above=0)
        check_number("weight decay", self.weight_decay, minimum=0)
        check_number("val_fraction", self.val_fraction, minimum=0, below=1)
        for name, low in (("batch_size", 1), ("epochs", 1), ("min_steps", 0), ("max_steps", 1), ("patience", 1),
                          ("val_max", 0), ("seed", 0), ("threads", 1)):
            check_number(name, getattr(self, name), "int", minimum=low)

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["device"] == "cpu":  # off: the keys of students trained before this option existed still hold
            del d["device"]
        return d


def _batch(tokens: np.ndarray, lengths: np.ndarray, rows: np.ndarray,
           device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(int(lengths[rows].max()), 1)
    ids, n = torch.from_numpy(tokens[rows, :width]), torch.from_numpy(lengths[rows])
    if device is None or device.type == "cpu":
        return ids, n
    return ids.to(device, non_blocking=True), n.to(device, non_blocking=True)


def _batches(rows: np.ndarray, lengths: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar lengths: sort within random chunks of 50 batches, then shuffle the batches.

    Texts of a batch are padded to its longest, so mixing lengths wastes most of a recurrent student's time.
    """
    perm = rng.permutation(rows)
    batches = []
    chunk = size * 50
    for start in range(0, len(perm), chunk):
        part = perm[start: start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i: i + size] for i in range(0, len(part), size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _loss(scores: torch.Tensor, target: torch.Tensor, hard: torch.Tensor | None, c: TrainConfig) -> torch.Tensor:
    if target.dtype == torch.long:  # NoDs: gold labels only
        return nn.functional.cross_entropy(scores, target)
    if c.loss == "mse":
        soft = nn.functional.mse_loss(scores, target)
    elif c.loss == "kl":
        t = c.temperature
        soft = nn.functional.kl_div(torch.log_softmax(scores / t, 1), torch.softmax(target / t, 1),
                                    reduction="batchmean") * t * t
    else:
        raise ValueError(f"unknown loss {c.loss!r}; expected 'mse' or 'kl'")
    if c.alpha > 0 and hard is not None and bool((hard >= 0).any()):
        known = hard >= 0
        return (1 - c.alpha) * soft + c.alpha * nn.functional.cross_entropy(scores[known], hard[known])
    return soft


@torch.no_grad()
def _agreement(module: nn.Module, tokens: np.ndarray, lengths: np.ndarray, gold: np.ndarray,
               device: torch.device | None = None) -> float:
    module.eval()
    hits = 0
    for start in range(0, len(gold), 1024):
        rows = np.arange(start, min(start + 1024, len(gold)))
        hits += int((module(*_batch(tokens, lengths, rows, device)).argmax(1).cpu().numpy() == gold[rows]).sum())
    module.train()
    return hits / max(len(gold), 1)


class _Loop:
    """The training loop's state, shared by `fit_module` and `fit_stream`: Adam steps, a held-out check every
    `eval_every` steps and at the last (`evaluate`, else the negated recent loss) that keeps the best weights,
    patience, the progress bar, and the history at the end. It draws no random numbers: the callers' batch order
    and their RNG draws are theirs alone."""

    def __init__(self, module: nn.Module, c: TrainConfig, total: int, eval_every: int, desc: str, progress: bool,
                 evaluate: Callable[[], float] | None):
        self.module, self.c, self.total, self.eval_every, self.desc, self.evaluate = (module, c, total, eval_every,
                                                                                     desc, evaluate)
        self.optimiser = torch.optim.Adam(module.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        self.best_score, self.best_step, self.best_state = -1.0, 0, copy.deepcopy(module.state_dict())
        self.since_best, self.step = 0, 0
        self.losses: list[float] = []
        module.train()
        self.bar = tqdm(total=total, desc=desc, disable=not progress, leave=False, unit="step")

    @property
    def done(self) -> bool:
        return self.step >= self.total or self.since_best >= self.c.patience

    def update(self, loss: torch.Tensor) -> None:
        """One optimiser step on `loss`, then the held-out check when it is due."""
        self.optimiser.zero_grad()
        loss.backward()
        self.optimiser.step()
        self.losses.append(float(loss.detach()))
        self.step += 1
        self.bar.update(1)
        if self.step % self.eval_every == 0 or self.step == self.total:
            recent = float(np.mean(self.losses[-50:]))
            score = self.evaluate() if self.evaluate is not None else -recent
            self.bar.set_postfix(loss=f"{recent:.4f}", val=f"{score:.3f}")
            # patience counts evaluations without a strict gain; on a tie the later weights are kept
            self.since_best = 0 if score > self.best_score else self.since_best + 1
            if score >= self.best_score:
                self.best_score, self.best_step = score, self.step
                self.best_state = copy.deepcopy(self.module.state_dict())

    def finish(self, n_val: int) -> dict:
        """Load the best weights, switch to eval mode; the history (`n_val` held-out rows)."""
        self.bar.close()
        self.module.load_state_dict(self.best_state)
        self.module.eval()
        history = {"steps": self.step, "best_step": self.best_step,
                   "val_score": self.best_score if n_val else None, "val_size": int(n_val),
                   "final_loss": float(np.mean(self.losses[-50:])) if self.losses else None}
        log.info("%s: %d steps, best at %d, held-out score %s", self.desc, self.step, self.best_step,
                 history["val_score"])
        return history


def fit_module(module: nn.Module, ids: Sequence[Sequence[int]], y: np.ndarray, c: TrainConfig,
               hard: np.ndarray | None = None, progress: bool = True, desc: str = "train") -> dict:
    """Train `module` in place on encoded texts; returns a history with the chosen step and score.

    `y` is (n, classes) float logits to distil from, or (n,) int class indices for plain supervision. With
    `c.device` a GPU, training runs there (in fp32: the students are small) and the module is moved back to the
    CPU at the end; the history says where it trained.
    """
    device = resolve_device(c.device)
    with torch_threads(c.threads):
        if device.type == "cpu":
            return _fit(module, ids, y, c, hard, progress, desc)
        try:
            module.to(device)
            return {**_fit(module, ids, y, c, hard, progress, desc, device), "device": str(device)}
        finally:
            module.cpu()


def _fit(module: nn.Module, ids: Sequence[Sequence[int]], y: np.ndarray, c: TrainConfig,
         hard: np.ndarray | None, progress: bool, desc: str, device: torch.device | None = None) -> dict:
    rng = np.random.default_rng(c.seed)
    torch.manual_seed(c.seed)
    tokens, lengths = pad_ids(ids)
    y = np.asarray(y)
    is_soft = y.ndim == 2
    target = torch.from_numpy(y.astype(np.float32)) if is_soft else torch.from_numpy(y.astype(np.int64))
    hard_t = torch.from_numpy(np.asarray(hard, dtype=np.int64)) if hard is not None else None
    if device is not None:  # the targets live where the module does; batches are indexed there
        target = target.to(device)
        hard_t = hard_t.to(device) if hard_t is not None else None

    n = len(y)
    n_val = min(int(n * c.val_fraction), c.val_max) if n >= 40 else 0
    order = rng.permutation(n)
    val, train = order[:n_val], order[n_val:]
    gold_val = (y[val].argmax(1) if is_soft else y[val]).astype(np.int64)
    val_tokens, val_lengths = tokens[val], lengths[val]

    steps_per_epoch = max(math.ceil(len(train) / c.batch_size), 1)
    total = min(max(c.epochs * steps_per_epoch, c.min_steps), c.max_steps)
    eval_every = min(max(steps_per_epoch, 50), 500)  # tiny label sets: not every 3 steps on 10 held-out texts
    loop = _Loop(module, c, total, eval_every, desc, progress,
                 (lambda: _agreement(module, val_tokens, val_lengths, gold_val, device)) if n_val else None)
    while loop.step < total:
        for rows in _batches(train, lengths, c.batch_size, rng):
            scores = module(*_batch(tokens, lengths, rows, device))
            index = rows if device is None else torch.from_numpy(rows).to(device)
            loop.update(_loss(scores, target[index], hard_t[index] if hard_t is not None else None, c))
            if loop.done:
                break
        if loop.done:
            break
    return loop.finish(n_val)


BLOCK_ROWS = 8192  # rows read, shuffled and length-bucketed together by the streaming trainer


def fit_stream(module: nn.Module, source, encode, c: TrainConfig, progress: bool = True, desc: str = "distil",
               block_rows: int | None = None) -> dict:
    """Distil from a source read in row blocks (``shards.LogitShards`` or ``InMemoryLogits``); memory holds one
    block, however large the transfer set.

    ``source.read(start, stop)`` gives texts and logits; ``encode`` turns texts into id lists. The order is
    a function of the row count and the seed only: a seeded sample of rows is held out (as in ``fit_module``);
    each epoch visits the blocks of ``block_rows`` rows in a seeded order, and within a block shuffles,
    length-buckets and shuffles batches as ``fit_module`` does over the whole set. So the same rows give the
    same student whether they sit in one file or in many shards. ``block_rows`` defaults to ``BLOCK_ROWS``.
    """
    with torch_threads(c.threads):
        return _fit_stream(module, source, encode, c, progress, desc, block_rows or BLOCK_ROWS)


def _held_out(source, val: np.ndarray, blocks: list[tuple[int, int]]) -> tuple[list[str], np.ndarray]:
    """The texts of the held-out rows `val` and the teacher's labels for them, in one pass over the blocks."""
    val_texts: list[str] = []
    gold_parts = []
    for start, stop in blocks:
        inside = val[(val >= start) & (val < stop)] - start
        if len(inside):
            texts, logits = source.read(start, stop)
            val_texts += [texts[i] for i in inside]
            gold_parts.append(logits[inside].argmax(1))
    return val_texts, np.concatenate(gold_parts).astype(np.int64) if gold_parts else np.zeros(0, np.int64)


def _fit_stream(module: nn.Module, source, encode, c: TrainConfig, progress: bool, desc: str,
                block_rows: int) -> dict:
    rng = np.random.default_rng(c.seed)
    torch.manual_seed(c.seed)
    n = len(source)
    n_val = min(int(n * c.val_fraction), c.val_max) if n >= 40 else 0
    val = np.sort(rng.choice(n, n_val, replace=False)) if n_val else np.zeros(0, np.int64)
    blocks = [(s, min(s + block_rows, n)) for s in range(0, n, block_rows)]
    val_texts, gold_val = _held_out(source, val, blocks)
    val_tokens, val_lengths = pad_ids(encode(val_texts)) if n_val else (np.zeros((0, 1), np.int64), np.zeros(0))

    def train_rows(start: int, stop: int) -> np.ndarray:
        return np.setdiff1d(np.arange(start, stop), val, assume_unique=True) - start

    steps_per_epoch = max(sum(math.ceil(len(train_rows(s, e)) / c.batch_size) for s, e in blocks), 1)
    total = min(max(c.epochs * steps_per_epoch, c.min_steps), c.max_steps)
    eval_every = min(max(steps_per_epoch, 50), 500)
    loop = _Loop(module, c, total, eval_every, desc, progress,
                 (lambda: _agreement(module, val_tokens, val_lengths, gold_val)) if n_val else None)
    while not loop.done:
        for b in rng.permutation(len(blocks)):
            start, stop = blocks[b]
            texts, logits = source.read(start, stop)
            tokens, lengths = pad_ids(encode(texts))
            target = torch.from_numpy(np.asarray(logits, dtype=np.float32))
            for rows in _batches(train_rows(start, stop), lengths, c.batch_size, rng):
                loop.update(_loss(module(*_batch(tokens, lengths, rows)), target[rows], None, c))
                if loop.done:
                    break
            if loop.done:
                break
    return loop.finish(n_val)
