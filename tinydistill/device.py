"""Where the teacher and students run, and in which precision.

`--device auto|cpu|cuda|cuda:N` resolves in `resolve_device`; on a GPU the teacher trains and labels under
autocast (bf16 where the card has it, else fp16 with a gradient scaler) and labels in batches sized by a token
budget (`token_budget_batches`). On a CPU the teacher may label in int8 (`quantize_int8`, torch dynamic
quantization of its `nn.Linear` layers: about twice fp32's speed, three to five times on CPUs with VNNI, where the
activations get all 8 bits), checked first on labelled texts by `int8_guard`. CPU fp32 is the reference: its code
path and its logit-cache keys are the ones from before.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import re
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from tinydistill.errors import TinyDistillError

if TYPE_CHECKING:
    from tinydistill.logitcache import LogitCache
    from tinydistill.teacher import Teacher

log = logging.getLogger(__name__)

DEVICES = "auto, cpu, cuda or cuda:N"
PRECISIONS = ("fp32", "int8")  # what `--label-precision` takes; a GPU labels in its autocast precision
INT8_TOLERANCE = 0.005  # int8 may lose at most half a point of accuracy against fp32 before the guard refuses it
INT8_SAMPLE = 500  # labelled texts the guard compares on when the recipe held none out


def cache_tag(precision: str, full_range: bool | None = None) -> str:
    """The logit cache's tag for logits of `precision`: a change of quantization scheme gets a new tag, so no stale
    logits are read. int8 with 8-bit activations (`full_range`; None: what `quantize_int8` gives on this CPU) is
    keyed apart from the 7-bit scheme."""
    if precision == "int8":
        return "int8-per-channel-a8" if (int8_full_range() if full_range is None else full_range) \
            else "int8-per-channel"
    return precision


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """`auto` (the GPU when torch sees one, else the CPU), `cpu`, `cuda` or `cuda:N`; a one-line error otherwise."""
    if isinstance(spec, torch.device):
        return spec
    name = (spec or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if not match:
        raise TinyDistillError(f"--device {spec!r}: expected {DEVICES}")
    if not torch.cuda.is_available():
        raise TinyDistillError(f"--device {spec}: torch sees no CUDA GPU here (torch {torch.__version__}); "
                               "use --device cpu or auto")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise TinyDistillError(f"--device {spec}: torch sees {torch.cuda.device_count()} GPU(s), cuda:0 to "
                               f"cuda:{torch.cuda.device_count() - 1}")
    return torch.device("cuda", index)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The half precision a GPU computes in (bf16 where supported, else fp16); None on the CPU (fp32)."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def precision_name(device: torch.device) -> str:
    """"fp32" on the CPU, "bf16" or "fp16" on a GPU: what the run record says produced an artefact."""
    dtype = autocast_dtype(device)
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast to the device's half precision on a GPU; nothing at all on the CPU (fp32, as before)."""
    dtype = autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device) -> Any:
    """A gradient scaler for fp16 training (bf16 and fp32 need none); None when not needed."""
    if autocast_dtype(device) is torch.float16:
        return torch.amp.GradScaler(device.type)
    return None


def token_budget_batches(lengths: Sequence[int], budget: int) -> list[np.ndarray]:
    """Row indices in batches of at most `budget` padded tokens, longest texts first.

    Rows are sorted by length (longest first: memory peaks in the first batch, if at all) and packed while
    rows x the batch's longest length stays within the budget, so short texts share large batches and long
    ones small batches. A single row longer than the budget still gets a batch of its own.
    """
    sizes = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-sizes, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        longest = max(int(sizes[order[start]]), 1)
        size = max(budget // longest, 1)
        batches.append(order[start: start + size])
        start += size
    return batches


def quantize_int8(model: nn.Module, full_range: bool | None = None) -> nn.Module:
    """A copy of `model` with every `nn.Linear` in dynamic int8 (weights int8 per output channel, activations
    quantized per batch); embeddings, layer norms and attention's matrix products stay fp32.

    CPU only. On one thread 1.5-2x fp32's throughput on CPUs without VNNI, 3-5x with it (MiniLM and
    mpnet-base, `benchmarks/bench_label.py`). Weights per channel rather than per tensor: on mpnet-base's sst2
    teacher (39 steps of the paper recipe) they kept 83.3% of 300 test texts right against 77.0% per tensor (fp32:
    90.3%) at the same speed. Activations in 8 bits where the CPU allows it (`int8_full_range`): on an mpnet-base
    sst2 teacher the int8 labels then equal fp32's on 97.6% of 1,000 test texts, against 93.7% with torch's 7 bits.
    `full_range=False` keeps torch's 7 bits everywhere (the benchmark's comparison).
    """
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch points to torchao, which is not a dependency; the API still works
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        quantized = quantize_dynamic(copy.deepcopy(model).cpu().eval(), {nn.Linear: per_channel_dynamic_qconfig},
                                     dtype=torch.qint8)
    if full_range is None or full_range:
        full_range = int8_full_range()  # asked for or not, never where the kernels would overflow
    if full_range:
        for name, module in list(quantized.named_modules()):
            if isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
                parent, _, child = name.rpartition(".")
                setattr(quantized.get_submodule(parent) if parent else quantized, child, FullRangeLinear(module))
    return quantized


class FullRangeLinear(nn.Module):
    """torch's dynamic int8 `Linear` with its activations quantized to 8 bits instead of 7 (twice as fine).

    torch keeps one bit back (`reduce_range`) because on x86 CPUs without VNNI its kernels add pairs of 8-bit
    products in 16 bits, which full-range activations can overflow; `quantize_int8` uses this only where
    `int8_full_range` has seen that they do not.
    """

    def __init__(self, linear: Any):
        super().__init__()
        self.linear = linear  # a torch.ao.nn.quantized.dynamic.Linear: its packed int8 weights and bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        packed = self.linear._packed_params._packed_params  # type: ignore[union-attr]
        return torch.ops.quantized.linear_dynamic(x, packed, reduce_range=False).to(x.dtype)


@functools.cache
def int8_full_range() -> bool:
    """Whether this CPU's int8 kernels take 8-bit activations without overflow (VNNI's 32-bit sums do; older x86
    kernels' 16-bit pair sums saturate). Found by computing, once, a product whose pair sums pass 16 bits: 64
    activations at 255 times 64 weights at 127 must give 64, not about half of it."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    probe = nn.Linear(64, 1, bias=False)
    with torch.no_grad():
        probe.weight.fill_(1.0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            packed = quantize_dynamic(nn.Sequential(probe), {nn.Linear: per_channel_dynamic_qconfig},
                                      dtype=torch.qint8)[0]._packed_params._packed_params
            out = torch.ops.quantized.linear_dynamic(torch.ones(1, 64), packed, reduce_range=False)
    except (RuntimeError, AttributeError):  # an engine without the op: keep torch's own 7-bit path
        return False
    return abs(float(out[0, 0]) - 64.0) < 1.0


def int8_guard(teacher: Teacher, texts: Sequence[str], labels: Sequence[int], cache: LogitCache | None = None,
               sample: int = INT8_SAMPLE, seed: int = 0, where: str = "labels") -> tuple[Teacher, dict]:
    """The int8 teacher when it scores within `INT8_TOLERANCE` of fp32 on labelled texts, else `teacher` itself.

    `texts`/`labels` are the held-out part of the teacher's labels, or its labelled texts (a seeded sample of
    at most `sample`), never the test split. Returns the teacher to label with and the decision, for the run
    record: both accuracies, the texts compared on and the precision chosen.
    """
    if len(texts) > sample:
        keep = np.sort(np.random.default_rng(seed).choice(len(texts), sample, replace=False))
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    gold = np.asarray(labels)
    int8 = teacher.int8()
    fp32_pred = teacher.logits(texts, cache=cache, progress=False).argmax(1)
    int8_pred = int8.logits(texts, cache=cache, progress=False).argmax(1)
    fp32_acc, int8_acc = float((fp32_pred == gold).mean()), float((int8_pred == gold).mean())
    passed = int8_acc >= fp32_acc - INT8_TOLERANCE
    decision = {"requested": "int8", "precision": "int8" if passed else "fp32", "checked_on": where,
                "texts": len(texts), "fp32_accuracy": fp32_acc, "int8_accuracy": int8_acc,
                "agreement": float((fp32_pred == int8_pred).mean()), "tolerance": INT8_TOLERANCE}
    if not passed:
        log.warning("int8 teacher scores %.1f%% against fp32's %.1f%% on %d %s: labelling in fp32",
                    100 * int8_acc, 100 * fp32_acc, len(texts), where)
        return teacher, decision
    log.info("int8 teacher: %.1f%% against fp32's %.1f%% on %d %s; labelling in int8", 100 * int8_acc,
             100 * fp32_acc, len(texts), where)
    return int8, decision


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with `n` intra-op threads, then restore the previous setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
