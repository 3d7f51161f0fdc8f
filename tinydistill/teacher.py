"""The teacher: a Hugging Face encoder with a classification head (fine-tuned by `finetune.py`).

`Teacher.logits` labels a transfer set in length-sorted, no-grad batches through an on-disk cache keyed by
the teacher's weights and the text (`logitcache.LogitCache`), so a second run, or a run killed half way, computes
only what is missing.
On a GPU (`Teacher.to`) it labels under autocast in batches sized by a token budget; `Teacher.int8` is the same
teacher in dynamic int8 for CPU labelling. Logits of any precision but fp32 are cached under a key of their own.
Saved teachers are safetensors and JSON: loading one unpickles nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from tinydistill.errors import TinyDistillError
from tinydistill.labels import check_texts
from tinydistill.logitcache import LogitCache
from tinydistill.runtime import softmax  # numpy only

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- model


class Classifier(nn.Module):
    """An encoder, a pooling of its token states, and a linear head."""

    def __init__(self, encoder: Any, n_classes: int, pooling: str, dropout: float = 0.1):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise TinyDistillError(f"unknown pooling {pooling!r}; expected 'cls' or 'mean'")
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, n_classes)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The pooled token states the head reads."""
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return states[:, 0]
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        return (states * mask).sum(1) / mask.sum(1).clamp(min=1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(input_ids, attention_mask)))


class Committee(nn.Module):
    """Classifiers fine-tuned from different seeds on the same labels; their logits are averaged."""

    def __init__(self, members: Sequence[Classifier]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(input_ids, attention_mask) for m in self.members]).mean(0)


class Teacher:
    """A fine-tuned classifier with its tokenizer and labels, in the students' vocabulary: `classes_` (the labels,
    in the order of the logits' columns), `predict` (values of `classes_`), `predict_proba`, and
    `save_pretrained`/`from_pretrained`. Texts come as a list (one string is a TypeError: pass `[text]`)."""

    def __init__(self, model: Classifier | Committee, tokenizer, classes: Sequence | np.ndarray, max_length: int = 128,
                 info: dict | None = None):
        self.model: Any = model  # a Classifier, or a Committee of them
        self.tokenizer = tokenizer
        self.classes_ = np.asarray(classes)  # the labels the head was trained on (teacher.json's "labels")
        self.max_length = max_length
        self.info = info or {}  # base model, recipe, training report
        self._fingerprint: str | None = None
        self.device = torch.device("cpu")  # where the model runs (`to`)
        self.precision = "fp32"  # what its logits are computed in: fp32 (CPU), bf16/fp16 (GPU autocast), int8
        self._full_range = False  # int8 only: activations in 8 bits rather than torch's 7 (`int8`)

    def to(self, device: str | torch.device) -> Teacher:
        """Move the model to `device` (a `resolve_device` spec); a GPU then computes under autocast. Returns self."""
        from tinydistill.device import precision_name, resolve_device

        self.device = resolve_device(device)
        self.model.to(self.device)
        self.precision = precision_name(self.device)
        return self

    def int8(self, full_range: bool | None = None) -> Teacher:
        """This teacher with its linear layers in dynamic int8, for labelling on the CPU (`device.quantize_int8`):
        activations in 8 bits where this CPU allows it, or torch's 7 with `full_range=False`."""
        from tinydistill.device import int8_full_range, quantize_int8

        full = int8_full_range() if full_range is not False else False
        model: Any = quantize_int8(self.model, full)  # the same Classifier or Committee, its nn.Linear layers swapped
        quantized = Teacher(model, self.tokenizer, self.classes_, self.max_length, self.info)
        quantized._fingerprint = self.fingerprint  # the fp32 weights it came from; `logit_key` adds the precision
        quantized.precision = "int8"
        quantized._full_range = full  # which int8 scheme: `logit_key` keeps the two apart
        return quantized

    @property
    def logit_key(self) -> str:
        """The logit cache's key: the fingerprint for fp32 (the key every cached CPU result has), else with the
        precision added, so int8 and GPU half-precision logits are kept apart from fp32 ones."""
        from tinydistill.device import cache_tag

        if self.precision == "fp32":
            return self.fingerprint
        return f"{self.fingerprint}-{cache_tag(self.precision, self._full_range)}"

    @property
    def fingerprint(self) -> str:
        """A hash of the weights: the logit cache's key, so a retrained teacher never reads stale logits."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for name, tensor in sorted(self.model.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            digest.update(str(self.max_length).encode())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def encode(self, texts: Sequence[str]) -> dict:
        """The tokenizer's batch (`input_ids`, `attention_mask`, padded, cut at `max_length`) on the teacher's
        device: what `model` reads, in inference here and in fine-tuning (`finetune`)."""
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return enc if self.device.type == "cpu" else enc.to(self.device)

    @torch.inference_mode()
    def word_vectors(self, words: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Each word alone through the encoder, pooled as the head reads a text: (len(words), hidden), float32.

        model2vec's idea applied to the fine-tuned teacher, whose vectors know the task (a committee: member 0)."""
        model: Classifier = self.model.members[0] if isinstance(self.model, Committee) else self.model  # type: ignore
        model.eval()
        out = [np.zeros((0, model.head.in_features), dtype=np.float32)]
        for start in range(0, len(words), batch_size):
            enc = self.tokenizer(list(words[start:start + batch_size]), padding=True, truncation=True, max_length=16,
                                 return_tensors="pt").to(self.device)
            out.append(model.embed(enc["input_ids"], enc["attention_mask"]).float().cpu().numpy())
        return np.concatenate(out)

    @torch.inference_mode()
    def _compute(self, texts: Sequence[str], batch_size: int, progress: bool, bar: tqdm | None = None) -> np.ndarray:
        """Logits of `texts`, batch by batch; each batch advances `bar` when given (else a bar of its own)."""
        if self.device.type != "cpu":
            return self._compute_packed(texts, batch_size, progress, bar)
        self.model.eval()
        lengths = [len(t) for t in texts]
        order = np.argsort(lengths, kind="stable")[::-1]  # longest first: memory peaks early, if at all
        out = np.zeros((len(texts), len(self.classes_)), dtype=np.float32)
        own = bar is None
        bar = tqdm(total=len(texts), desc="teacher logits", disable=not progress, leave=False, unit="text") \
            if bar is None else bar
        for start in range(0, len(texts), batch_size):
            rows = order[start: start + batch_size]
            enc = self.encode([texts[i] for i in rows])
            out[rows] = self.model(enc["input_ids"], enc["attention_mask"]).float().numpy()
            bar.update(len(rows))
        if own:
            bar.close()
        return out

    @torch.inference_mode()
    def _compute_packed(self, texts: Sequence[str], batch_size: int, progress: bool,
                        bar: tqdm | None = None) -> np.ndarray:
        """The GPU path: texts tokenized once, then batches of at most `batch_size` x `max_length` padded tokens
        (`device.token_budget_batches`), computed under autocast and moved back as float32."""
        from tinydistill.device import autocast, token_budget_batches

        self.model.eval()
        out = np.zeros((len(texts), len(self.classes_)), dtype=np.float32)
        if not len(texts):
            return out
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        ids, masks = enc["input_ids"], enc["attention_mask"]
        pad, left = self.tokenizer.pad_token_id or 0, self.tokenizer.padding_side == "left"
        own = bar is None
        bar = tqdm(total=len(texts), desc="teacher logits", disable=not progress, leave=False, unit="text") \
            if bar is None else bar
        for rows in token_budget_batches([len(x) for x in ids], batch_size * self.max_length):
            width = max(len(ids[i]) for i in rows)
            input_ids = np.full((len(rows), width), pad, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                place = slice(width - len(ids[i]), width) if left else slice(0, len(ids[i]))
                input_ids[r, place], mask[r, place] = ids[i], masks[i]
            with autocast(self.device):
                scores = self.model(torch.from_numpy(input_ids).to(self.device), torch.from_numpy(mask).to(self.device))
            out[rows] = scores.float().cpu().numpy()
            bar.update(len(rows))
        if own:
            bar.close()
        return out

    def logits(self, texts: Sequence[str], batch_size: int = 64, cache: LogitCache | None = None,
               progress: bool = True) -> np.ndarray:
        """Logits (n, classes); with a cache, only texts not seen by this exact teacher are computed.

        Non-finite logits (a diverged or damaged teacher) are an error, never passed on or cached."""
        check_texts(texts)
        if cache is None:
            return _check_finite(self._compute(texts, batch_size, progress), self.info.get("base", "the teacher"))
        known = cache.get(self.logit_key, texts, width=len(self.classes_))
        missing = [i for i, row in enumerate(known) if row is None]
        if missing:
            log.info("teacher logits: %d cached, %d to compute", len(texts) - len(missing), len(missing))
        chunk = 4096  # committed chunk by chunk: a killed run keeps what it finished
        bar = tqdm(total=len(missing), desc="teacher logits", disable=not progress or not missing, unit="text")
        for start in range(0, len(missing), chunk):  # the bar moves batch by batch, not chunk by chunk
            rows = missing[start: start + chunk]
            values = self._compute([texts[i] for i in rows], batch_size, False, bar)
            _check_finite(values, self.info.get("base", "the teacher"))
            cache.put(self.logit_key, [texts[i] for i in rows], values)
            for i, v in zip(rows, values):
                known[i] = v
        bar.close()
        if not known:
            return np.zeros((0, len(self.classes_)), np.float32)
        return np.stack([k for k in known if k is not None]).astype(np.float32)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64, cache: LogitCache | None = None,
                      progress: bool = True) -> np.ndarray:
        """Class probabilities (n, classes), columns in `classes_` order: the softmax of `logits`."""
        return softmax(self.logits(texts, batch_size, cache, progress))

    def predict(self, texts: Sequence[str], batch_size: int = 64, cache: LogitCache | None = None,
                progress: bool = True) -> np.ndarray:
        """The most probable label of each text, an array of values of `classes_`."""
        return self.classes_[self.logits(texts, batch_size, cache, progress).argmax(1)]

    def save_pretrained(self, folder: str | os.PathLike, overwrite: bool = False) -> Path:
        """encoder/ (weights + tokenizer, safetensors), head.safetensors and teacher.json (with the weights'
        sha256); atomic. An existing teacher folder is replaced; anything else is refused unless `overwrite`."""
        from safetensors.torch import save_file

        from tinydistill.folders import check_out, hashes, replace_folder, staging

        folder = check_out(folder, "teacher", overwrite, option="folder")
        tmp = staging(folder)
        try:
            committee = isinstance(self.model, Committee)
            members = list(self.model.members) if committee else [self.model]
            weights = []
            for i, member in enumerate(members):  # a committee keeps each member in member-<i>/
                prefix = f"member-{i}/" if committee else ""
                member.encoder.save_pretrained(tmp / prefix / "encoder", safe_serialization=True)
                self.tokenizer.save_pretrained(tmp / prefix / "encoder")
                save_file({k: v.contiguous().cpu() for k, v in member.head.state_dict().items()},
                          str(tmp / prefix / "head.safetensors"))
                weights += [f"{prefix}{p.relative_to(tmp / prefix).as_posix()}"
                            for p in sorted((tmp / prefix / "encoder").glob("*.safetensors"))]
                weights.append(f"{prefix}head.safetensors")
            meta = {"labels": self.classes_.tolist(), "pooling": members[0].pooling, "max_length": self.max_length,
                    "members": len(members), **self.info, "sha256": hashes(tmp, weights)}
            (tmp / "teacher.json").write_text(json.dumps(meta, indent=2))
            replace_folder(tmp, folder)
        except BaseException:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> Teacher:
        """Read a folder written by `save_pretrained`; a missing, corrupt (sha256) or non-finite part is a one-line
        error."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        from tinydistill.folders import check_hashes

        folder = Path(folder)
        meta_path = folder / "teacher.json"
        if not folder.is_dir():
            raise TinyDistillError(f"{folder}: not a teacher folder")
        if not meta_path.exists():
            raise TinyDistillError(f"{meta_path}: missing; not a saved tinydistill teacher folder")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise TinyDistillError(f"{meta_path}: not valid JSON ({exc})") from None
        n = meta.get("members", 1) if isinstance(meta, dict) else None
        if not isinstance(meta, dict) or not isinstance(meta.get("labels"), list) or len(meta["labels"]) < 2 \
                or not isinstance(n, int) or not 1 <= n <= 64 or meta.get("pooling") not in ("cls", "mean") \
                or not isinstance(meta.get("max_length"), int) or not 2 <= meta["max_length"] <= 1_000_000:
            raise TinyDistillError(f"{meta_path}: expected 'labels' (2 or more), 'pooling' (cls or mean), "
                                   "'max_length' (2 or more) and 'members' (1 to 64)")
        check_hashes(folder, meta.get("sha256"), meta_path)
        places = [folder / f"member-{k}" for k in range(n)] if n > 1 else [folder]
        members = []
        for place in places:
            encoder = place / "encoder"
            if not (encoder / "config.json").is_file():
                raise TinyDistillError(f"{encoder}: missing the encoder (config.json and weights)")
            try:
                member = Classifier(AutoModel.from_pretrained(encoder), len(meta["labels"]), meta["pooling"])
                member.head.load_state_dict(load_file(str(place / "head.safetensors")))
            except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise TinyDistillError(f"{place}: could not load the teacher ({first})") from None
            for name, value in member.state_dict().items():
                if value.is_floating_point() and not torch.isfinite(value).all():
                    raise TinyDistillError(f"{place}: tensor {name!r} holds NaN or infinite values; the teacher "
                                           "is corrupt")
            members.append(member)
        check_tokenizer_files(places[0] / "encoder")
        try:
            tokenizer = AutoTokenizer.from_pretrained(places[0] / "encoder")
        except (OSError, ValueError, TypeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise TinyDistillError(f"{places[0] / 'encoder'}: no usable tokenizer ({first})") from None
        model = Committee(members) if n > 1 else members[0]
        info = {k: v for k, v in meta.items() if k not in ("labels", "pooling", "max_length", "members", "sha256")}
        return cls(model.eval(), tokenizer, meta["labels"], meta["max_length"], info)

    @classmethod
    def committee(cls, members: Sequence[Teacher], recipe: dict) -> Teacher:
        """One teacher whose logits are the mean of the members' (fine-tuned on the same labels by `recipe`)."""
        reports = [m.info.get("training", {}) for m in members]
        training = {"steps": sum(r.get("steps", 0) for r in reports),
                    "seconds": round(sum(r.get("seconds", 0.0) for r in reports), 1), "members": reports}
        info = {**members[0].info, "recipe": recipe, "training": training}
        return cls(Committee([m.model for m in members]).eval(), members[0].tokenizer, members[0].classes_,
                   members[0].max_length, info)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                   "sentencepiece.bpe.model")


def check_tokenizer_files(folder: Path) -> None:
    """Refuse a model folder without tokenizer files: transformers would build an empty tokenizer from the model's
    config and every text would read as the same unknown tokens, silently."""
    if folder.is_dir() and not any((folder / name).exists() for name in TOKENIZER_FILES):
        raise TinyDistillError(f"{folder}: no usable tokenizer (none of {', '.join(TOKENIZER_FILES[:3])}, ...)")


def _check_finite(values: np.ndarray, name: str) -> np.ndarray:
    if not np.isfinite(values).all():
        raise TinyDistillError(f"teacher {name}: gave NaN or infinite logits; its weights are damaged or its "
                               "training diverged (try a lower --teacher-lr)")
    return values
