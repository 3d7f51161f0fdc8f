"""The GPU check: the CUDA path of the teacher and students, on models built in-process (no network, no teachers).

    PYTHONPATH=. python benchmarks/gpu_check.py                 # on a machine with a GPU (about 2-4 minutes)
    PYTHONPATH=. python benchmarks/gpu_check.py --device cpu    # a rehearsal of every step on the CPU, tiny sizes

1. Logits: a tiny random BERT teacher labels the same texts on the CPU (the fp32 path every cached result
   comes from) and on the GPU: in fp32 they must match to ~1e-4, under bf16/fp16 autocast within a half-precision
   tolerance with the same argmax on at least 97% of the texts.
2. Fine-tuning: a few steps of `train_teacher` on the GPU; the loss must stay finite and the dtype seen inside
   the forward pass (the outputs of the encoder's linear layers) must be bf16 (fp16 on cards without bf16).
3. Throughput: labelling with a randomly initialised BERT-base-sized encoder (BertConfig's defaults: 768 hidden,
   12 layers, 109M parameters; random weights cost the same arithmetic as trained ones) under autocast with the
   token-budget batcher, on synthetic texts of SST-2-like and AG-News-like lengths, tokenization included.
4. Throughput: a BiLSTM student distilling on the GPU (texts of training a second), beside the same on the CPU.

Exit codes: 0 every check passed; 1 a check failed; on a machine where torch sees no CUDA device it prints
'no CUDA device' and exits 0 (3 with --require-gpu).
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project's own files, wherever it runs from

import numpy as np  # noqa: E402
import torch  # noqa: E402

WORDS = ("the a film movie plot story actor scene was is and but not very really quite good great fine superb "
         "lovely fun bad awful dull poor boring ugly market shares rose fell company team won lost game season "
         "president said on monday tuesday new york reuters oil prices stocks world league players coach").split()
FAILED: list[str] = []


def check(ok: bool, what: str) -> None:
    print(f"  [{'ok' if ok else 'FAIL'}] {what}", flush=True)
    if not ok:
        FAILED.append(what)


def synthetic_texts(n: int, mean_words: int, seed: int) -> list[str]:
    """Sentences of the word list with lengths spread around `mean_words` (a gamma, like real text lengths)."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.gamma(2.0, mean_words / 2.0, n).astype(int), 1, 400)
    return [" ".join(rng.choice(WORDS, k)) for k in lengths]


def tokenizer_folder(folder: Path):
    """A word-piece tokenizer over the word list, saved where `from_pretrained` finds it."""
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    tokenizer.save_pretrained(folder)
    return tokenizer


def tiny_teacher(folder: Path, n_classes: int = 3):
    """A random 2-layer BERT with a mean-pooling head (saved to `folder` too, for `train_teacher`)."""
    from transformers import BertConfig, BertModel

    from tinydistill.teacher import Classifier, Teacher

    tokenizer = tokenizer_folder(folder)
    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=len(WORDS) + 8, hidden_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, intermediate_size=128, max_position_embeddings=160))
    encoder.save_pretrained(folder)
    model = Classifier(encoder, n_classes, "mean").eval()
    with torch.no_grad():  # a wider spread of logits than a fresh head gives: fewer near-ties for the argmax test
        model.head.weight.mul_(20.0)
    return Teacher(model, tokenizer, [str(i) for i in range(n_classes)], max_length=128)


def check_logits(device: torch.device, folder: Path, n: int) -> None:
    from tinydistill.device import autocast_dtype

    print(f"1. logits: CPU fp32 against {device}", flush=True)
    texts = synthetic_texts(n, 20, seed=1) + ["", "good " * 300]  # an empty text and one cut at max_length
    cpu = tiny_teacher(folder)
    reference = cpu._compute(texts, 64, progress=False)
    on_device = copy.deepcopy(cpu).to(device)
    # the same model in fp32 on the device, batched by the token budget: the path without the half precision
    saved = on_device.precision
    with torch.autocast(device_type=device.type, enabled=False):
        enc = cpu.tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt").to(device)
        with torch.inference_mode():
            fp32 = on_device.model(enc["input_ids"], enc["attention_mask"]).float().cpu().numpy()
    diff32, scale = float(np.abs(fp32 - reference).max()), float(np.abs(reference).max())
    tolerance32 = 1e-5 * scale + 1e-4  # fp32 kernels differ in summation order only
    check(diff32 <= tolerance32, f"fp32 on {device} matches the CPU: max |diff| {diff32:.2e} (<= {tolerance32:.1e})")
    half = on_device._compute(texts, 64, progress=False)  # the labelling path: autocast, token-budget batches
    diff = float(np.abs(half - reference).max())
    agree = float((half.argmax(1) == reference.argmax(1)).mean())
    tolerance = 0.03 * scale + 0.02  # bf16 keeps 8 bits of mantissa: ~0.4% per op, a few ops deep
    check(saved == {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[autocast_dtype(device)],
          f"the teacher on {device} labels in {saved}")
    check(diff <= tolerance, f"{saved} labelling matches the CPU: max |diff| {diff:.3f} (logits up to {scale:.2f}, "
          f"tolerance {tolerance:.3f})")
    check(agree >= 0.97, f"{saved} labelling: same argmax as the CPU on {100 * agree:.1f}% of {len(texts)} texts "
          "(>= 97%)")
    check(np.isfinite(half).all() and half.dtype == np.float32, "labels come back as finite float32 numpy")


def check_fine_tuning(device: torch.device, folder: Path) -> None:
    from tinydistill.device import autocast_dtype
    from tinydistill.finetune import get_recipe, train_teacher

    print(f"2. fine-tuning on {device}", flush=True)
    texts = synthetic_texts(96, 12, seed=2)
    labels = [int(("good" in t) + ("bad" in t)) for t in texts]  # three classes the words decide
    seen: set[torch.dtype] = set()
    losses: list[float] = []

    def record(module, inputs, output):  # the dtype inside the forward pass: what the linear layers put out
        if isinstance(module, torch.nn.Linear) and torch.is_tensor(output) and module.training:
            seen.add(output.dtype)

    cross_entropy = torch.nn.functional.cross_entropy

    def loss_seen(*args, **kwargs):  # finetune calls nn.functional.cross_entropy for its loss: keep each value
        loss = cross_entropy(*args, **kwargs)
        losses.append(float(loss.detach()))
        return loss

    hook = torch.nn.modules.module.register_module_forward_hook(record)
    torch.nn.functional.cross_entropy = loss_seen
    try:
        started = time.perf_counter()
        recipe = get_recipe("strong", epochs=1, min_steps=12, batch_size=16, max_length=32, lr=1e-3, head_lr=1e-2,
                            warmup=0.0)
        teacher = train_teacher(str(folder), texts, labels, ["0", "1", "2"], recipe, progress=False, device=device)
        seconds = time.perf_counter() - started
    finally:
        hook.remove()
        torch.nn.functional.cross_entropy = cross_entropy
    report = teacher.info["training"]
    expected = autocast_dtype(device) or torch.float32
    check(report["steps"] >= 12, f"{report['steps']} optimiser steps in {seconds:.1f}s")
    check(expected in seen, f"dtype inside the forward pass: {sorted(map(str, seen))} (expected {expected})")
    finite = all(math.isfinite(v) for v in losses) and all(torch.isfinite(p).all() for p in teacher.model.parameters())
    check(finite and len(losses) >= 12, f"loss finite at every step ({losses[0]:.3f} -> {losses[-1]:.3f}) and the "
          "weights too" if losses else "no loss was seen")
    check(report["device"] == str(device) and report["precision"] == teacher.precision,
          f"the training report says device {report['device']}, precision {report['precision']}")
    test = synthetic_texts(64, 12, seed=3)
    gold = np.array([("good" in t) + ("bad" in t) for t in test])
    acc = float((teacher.logits(test, progress=False).argmax(1) == gold).mean())
    print(f"  (accuracy after {report['steps']} steps on a toy task: {100 * acc:.0f}%; chance ~33%)")


def time_labelling(device: torch.device, folder: Path, sizes: dict[str, int], base_sized: bool) -> None:
    from transformers import BertConfig, BertModel

    from tinydistill.teacher import Classifier, Teacher

    config = BertConfig() if base_sized else BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                        intermediate_size=128)
    torch.manual_seed(0)
    model = Classifier(BertModel(config), 4, "mean").eval()
    teacher = Teacher(model, tokenizer_folder(folder / "big"), ["0", "1", "2", "3"], max_length=128).to(device)
    params = teacher.n_parameters() / 1e6
    print(f"3. labelling throughput on {device} in {teacher.precision}: a random {config.num_hidden_layers}-layer, "
          f"{config.hidden_size}-hidden encoder ({params:.1f}M parameters), token budget 64 x 128", flush=True)
    for name, (n, words) in {"SST-2-like": (sizes["sst2"], 20), "AG-News-like": (sizes["agnews"], 40)}.items():
        texts = synthetic_texts(n, words, seed=4)
        teacher._compute(texts[: min(512, n)], 64, progress=False)  # warm-up: kernels, allocator
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        out = teacher._compute(texts, 64, progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
        check(bool(np.isfinite(out).all()), f"{name} ({n:,} texts, ~{words} words): {n / seconds:,.0f} texts/s "
              f"({seconds:.1f}s, tokenization included)")
    if device.type == "cuda":
        print(f"  peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")


def time_student(device: torch.device, n: int, steps: int) -> None:
    """`distill.fit_module` on a paper-sized BiLSTM (texts encoded beforehand: the rate is the training's)."""
    from tinydistill.distill import TrainConfig, fit_module
    from tinydistill.students import BiLSTM, BiLSTMConfig
    from tinydistill.words import Vocabulary

    texts = synthetic_texts(n, 20, seed=5)
    vocab = Vocabulary.build(texts)
    ids = vocab.encode_batch(texts)
    logits = np.random.default_rng(5).normal(size=(n, 4)).astype(np.float32)
    print(f"4. BiLSTM student distilling ({n:,} texts, batches of 64)", flush=True)
    rates = {}
    for where in dict.fromkeys([str(device), "cpu"]):
        budget = steps if where != "cpu" else max(steps // 10, 10)  # the CPU is only the yardstick
        cfg = TrainConfig(device=where, epochs=1, min_steps=budget, max_steps=budget, patience=10**6)
        torch.manual_seed(0)
        module = BiLSTM(BiLSTMConfig(vocab_size=len(vocab), n_classes=4))
        started = time.perf_counter()
        history = fit_module(module, ids, logits, cfg, progress=False)
        seconds = time.perf_counter() - started
        rates[where] = history["steps"] * cfg.batch_size / seconds
        on_cpu = next(module.parameters()).device.type == "cpu"
        check(on_cpu and math.isfinite(history["final_loss"]),
              f"on {where}: {history['steps']} steps in {seconds:.1f}s, {rates[where]:,.0f} texts/s of training "
              f"(held-out checks included), final loss {history['final_loss']:.3f}, module back on the CPU")
    if len(rates) == 2:
        print(f"  {device} / cpu: x{rates[str(device)] / rates['cpu']:.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu for a rehearsal at tiny sizes")
    parser.add_argument("--require-gpu", action="store_true", help="exit 3 (not 0) when there is no CUDA device")
    a = parser.parse_args()
    if a.device != "cpu" and not torch.cuda.is_available():
        print(f"no CUDA device: torch {torch.__version__} sees no GPU here; nothing checked "
              "(run with --device cpu for a rehearsal of the steps on the CPU)")
        return 3 if a.require_gpu else 0

    from tinydistill.device import resolve_device

    device = resolve_device(a.device)
    rehearsal = device.type == "cpu"
    if not rehearsal:
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
              f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")
    else:
        torch.set_num_threads(1)
        print(f"rehearsal on the CPU (fp32, tiny sizes), torch {torch.__version__}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        check_logits(device, folder, 200 if rehearsal else 2000)
        check_fine_tuning(device, folder)
        time_labelling(device, folder, {"sst2": 300, "agnews": 200} if rehearsal else
                       {"sst2": 50_000, "agnews": 20_000}, base_sized=not rehearsal)
        time_student(device, 2000 if rehearsal else 100_000, 40 if rehearsal else 3000)
    print(f"\n{len(FAILED)} check(s) failed" if FAILED else "\nall checks passed",
          f"in {time.perf_counter() - started:.0f}s")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
