"""Export students into self-contained folders that `tinydistill.runtime` (numpy) or an ONNX runtime can run.

Every export is a student folder (config.json, vocab.txt, model.safetensors; see DEVELOPERS.md) plus an
`"export"` entry in config.json:

- `numpy`: float32 weights, the same tensors as the torch state_dict (so `Student.from_pretrained` reads it too).
- `int8`: every weight matrix as int8 with one float32 scale per output row (`name` and `name.scale`),
  symmetric: `w ~ q * scale`, `scale = max|row| / 127`; biases stay float32. About 4x smaller; the runtime
  dequantises at load.
- `onnx`: the numpy export plus `model.onnx`, the torch module traced by `torch.onnx.export`. Its inputs are
  `ids` (int64, batch x tokens, [PAD]=0 after each text) and `lengths` (int64, batch); the output is `logits`.
  Tokenising stays outside the graph (`runtime.Encoder`), and so does the calibration: probabilities are
  softmax(logits / temperature), with config.json's `temperature` (every export carries it). The export is
  checked with onnxruntime against the numpy runtime before the folder is written.

Folders are written to a temp folder and swapped in, so a reader never sees half an export.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from tinydistill import __version__, runtime
from tinydistill.cards import write_card
from tinydistill.errors import TinyDistillError
from tinydistill.folders import check_out, hashes, is_run_folder, replace_folder, staging

log = logging.getLogger(__name__)

FORMATS = ("numpy", "int8", "onnx")
ONNX_OPSET = 17
ONNX_TOLERANCE = 1e-4  # max |logit difference| between onnxruntime and the numpy runtime


def export(source, out: str | os.PathLike, format: str = "numpy", student: str | None = None,
           overwrite: bool = False) -> list[Path]:
    """Export `source` into `out`; returns the folders written.

    `source` is a `Student`, a student folder (saved or already exported) or a run folder, whose students
    (`<run>/students/<name>/`) go to `out/<name>/`; `student` picks one of them. An `out` that exists and is
    not an export of the same kind (`folders.check_out`) is refused unless `overwrite`.
    """
    if format not in FORMATS:
        raise TinyDistillError(f"unknown export format {format!r}; expected one of {list(FORMATS)}")
    out = Path(out)
    if hasattr(source, "save_pretrained"):  # a fitted Student: save it, then export the folder
        with tempfile.TemporaryDirectory(prefix="tinydistill-export-") as tmp:
            return [export_folder(source.save_pretrained(Path(tmp) / "student"), out, format)]
    folder = Path(source)
    if not is_run_folder(folder):
        if student is not None:
            raise TinyDistillError(f"{folder}: --student needs a run folder (one with students/)")
        return [export_folder(folder, out, format, overwrite)]
    check_out(out, "exports", overwrite, source=folder, inside_ok=True)  # RUN/export-FORMAT is the default
    names = sorted(p.name for p in (folder / "students").iterdir()
                   if (p / "config.json").exists() and not p.name.startswith("."))
    if student is not None:
        if student not in names:
            raise TinyDistillError(f"{folder / 'students'}: no student {student!r}; found {names}")
        names = [student]
    if not names:
        raise TinyDistillError(f"{folder / 'students'}: no student folders (with config.json) to export")
    for name in names:  # every refusal before the first write
        check_out(out / name, "student", overwrite, source=folder / "students" / name)
    return [export_folder(folder / "students" / name, out / name, format, overwrite) for name in names]


def default_out(source: str | os.PathLike, format: str) -> Path:
    """Where `tinydistill export` writes without --out: RUN/export-FORMAT for a run folder, else MODEL-FORMAT."""
    source = Path(source)
    return source / f"export-{format}" if is_run_folder(source) else source.with_name(f"{source.name}-{format}")


def export_folder(folder: Path, out: Path, format: str, overwrite: bool = False) -> Path:
    """Export one student folder; everything is checked by loading it with the runtime first."""
    folder, out = Path(folder), Path(out)
    check_out(out, "student", overwrite, source=folder)
    model = runtime.load(folder)  # validates config, vocabulary and weights
    meta = runtime.read_config(folder)
    weights = runtime.load_weights(folder / runtime.WEIGHTS)
    tmp = staging(out)
    try:
        # no file-system path: /metadata shows this entry, and where a model was built is nobody's business
        meta["export"] = {"format": format, "source": folder.name, "tinydistill": __version__}
        if format == "int8":
            meta["export"]["quantization"] = "int8, symmetric, one float32 scale per output row (name.scale)"
            tensors = quantize_int8(weights)
        else:
            tensors = weights
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp / runtime.WEIGHTS),
                  metadata={"format": "np"})
        shutil.copyfile(folder / "vocab.txt", tmp / "vocab.txt")
        if format == "onnx":
            export_onnx(folder, tmp / "model.onnx")
            meta["export"]["onnx"] = {"file": "model.onnx", "inputs": {"ids": "int64 [batch, tokens], 0 = [PAD]",
                                      "lengths": "int64 [batch]"}, "outputs": {"logits": "float32 [batch, classes]"},
                                      "probabilities": "softmax(logits / temperature), the temperature of this "
                                      "config.json", "opset": ONNX_OPSET}
        # every file the folder's models are read from is hashed: `runtime.load` checks them all
        meta["sha256"] = hashes(tmp, [runtime.WEIGHTS] + (["model.onnx"] if format == "onnx" else []))
        (tmp / "config.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        write_card(tmp, meta)  # the source's provenance travels with the export
        if format == "onnx":
            check_onnx(tmp / "model.onnx", model)
        runtime.load(tmp)  # what we wrote reads back
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_folder(tmp, out)
    log.info("exported %s (%s) to %s", folder, format, out)
    return out


def quantize_int8(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Matrices (and conv kernels) as int8 with a float32 scale per output row; vectors stay float32.

    Per-row scales keep rows of very different size (frequent vs rare words, gates) each at full 8-bit
    resolution; an all-zero row (the [PAD] embedding) stays exactly zero.
    """
    out: dict[str, np.ndarray] = {}
    for name, w in weights.items():
        if w.ndim < 2:
            out[name] = w.astype(np.float32)
            continue
        peak = np.abs(w).reshape(len(w), -1).max(1)
        scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        shaped = scale.reshape((-1,) + (1,) * (w.ndim - 1))
        out[name] = np.clip(np.rint(w / shaped), -127, 127).astype(np.int8)
        out[name + runtime.SCALE] = scale
    return out


# -------------------------------------------------------------------------------------------------- onnx


def _onnx_module(student):
    """The module to trace: the student's own, except the CNN, whose padding branch is made unconditional."""
    import torch
    from torch import nn

    module = student.module_.eval()
    if student.model_type != "cnn":
        return module

    class ExportCNN(nn.Module):
        """Same layers and masking as students.CNN; the padding to the widest window is unconditional, which
        keeps the traced graph free of a shape-dependent branch."""

        def __init__(self, cnn):
            super().__init__()
            self.cnn = cnn
            self.widths = [conv.kernel_size[0] for conv in cnn.convs]

        def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            min_len = self.cnn.min_len
            x = self.cnn.embedding(nn.functional.pad(ids, (0, min_len))).transpose(1, 2)
            end = lengths.clamp(min=min_len).unsqueeze(1)
            pooled = []
            for conv, width in zip(self.cnn.convs, self.widths, strict=True):
                y = torch.relu(conv(x))
                starts = torch.arange(y.shape[2], device=y.device).unsqueeze(0)
                pooled.append(torch.where((starts + width <= end).unsqueeze(1), y, 0.0).amax(dim=2))
            return self.cnn.out(torch.cat(pooled, dim=1))

    return ExportCNN(module).eval()


def export_onnx(folder: Path, path: Path) -> None:
    """Trace the torch student of `folder` into `path` (needs torch and onnx: the `train` and `onnx` extras)."""
    import warnings

    try:
        import torch

        from tinydistill.students import Student
    except ImportError:
        raise TinyDistillError("ONNX export needs torch: pip install 'tinydistill[train]'") from None
    student = Student.from_pretrained(folder)
    ids, lengths = torch.tensor([[2, 3, 4, 5, 6, 7], [2, 3, 0, 0, 0, 0]]), torch.tensor([6, 2])
    # the TorchScript exporter: torch.export (dynamo=True) cannot trace pack_padded_sequence with
    # enforce_sorted=False, which the BiLSTM needs for its backward direction
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(_onnx_module(student), (ids, lengths), str(path), dynamo=False,
                              input_names=["ids", "lengths"], output_names=["logits"], opset_version=ONNX_OPSET,
                              dynamic_axes={"ids": {0: "batch", 1: "tokens"}, "lengths": {0: "batch"},
                                            "logits": {0: "batch"}})
        except ImportError as exc:
            raise TinyDistillError(f"ONNX export needs onnx ({exc}): pip install 'tinydistill[onnx]'") from None


def probe_texts(model: runtime.Model, n: int = 64, seed: int = 0) -> list[str]:
    """Texts made of the model's own words, of every length from empty to past `max_length`."""
    rng = np.random.default_rng(seed)
    words = model.vocab.words[2:] or ["x"]
    longest = model.vocab.config.max_length + 5
    sizes = [0, 1, 2, longest] + rng.integers(1, longest, n - 4).tolist()
    return [" ".join(rng.choice(words, size) if size else []) for size in sizes]


def onnx_forward(session):
    """A `runtime.Model` forward pass through an onnxruntime session: (flat ids, lengths) -> logits, each text
    padded with [PAD] to the longest of its batch."""
    def forward(ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        padded = np.zeros((len(lengths), max(int(lengths.max(initial=0)), 1)), np.int64)
        padded[np.arange(padded.shape[1]) < lengths[:, None]] = ids
        return session.run(["logits"], {"ids": padded, "lengths": lengths})[0]

    return forward


def onnx_logits(session, model: runtime.Model, texts: list[str]) -> np.ndarray:
    """Logits of an onnxruntime session for raw texts: tokenised by the runtime, padded with [PAD]."""
    return onnx_forward(session)(*model.encoder(texts))


def onnx_session(path: Path):
    """An onnxruntime session on the CPU for `path` (the `onnx` extra)."""
    try:
        import onnxruntime
    except ImportError:
        raise TinyDistillError("running the ONNX export needs onnxruntime: pip install 'tinydistill[onnx]'") \
            from None
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def load_onnx(folder: str | os.PathLike) -> runtime.Model:
    """An `onnx` export as a `runtime.Model` whose forward pass is its `model.onnx` under onnxruntime: the same
    `classes_`, `predict`, `predict_proba` (with the export's temperature) as the numpy runtime."""
    model = runtime.load(folder)
    model.forward = onnx_forward(onnx_session(Path(folder) / "model.onnx"))
    return model


def check_onnx(path: Path, model: runtime.Model) -> float:
    """Max |logit difference| between onnxruntime on `path` and the numpy runtime; raises above tolerance."""
    session = onnx_session(path)
    texts = probe_texts(model)
    diff = float(np.abs(onnx_logits(session, model, texts) - model.logits(texts)).max())
    if not diff <= ONNX_TOLERANCE:
        raise TinyDistillError(f"{path}: onnxruntime logits differ from the numpy runtime by {diff:.2e}")
    log.info("%s: onnxruntime matches the numpy runtime (max |logit difference| %.1e)", path, diff)
    return diff
