"""Teacher labelling throughput and test accuracy: fp32 against int8 on the CPU (and the GPU where there is one).

    TINYDISTILL_DATA=../shared/data python benchmarks/bench_label.py --threads 1 \\
        --teacher sst2=runs/demo/teacher --teacher sst2=/tmp/mpnet-sst2 --teacher agnews=/tmp/mpnet-agnews

Each `--teacher DATASET=FOLDER` names a fine-tuned teacher (a folder written by `train-teacher`, or a run folder
holding `teacher/`) and the paper dataset it was trained on; without any, the MiniLM teachers `tinydistill run`
left in the shared cache for sst2/200 and agnews/400, seed 0 (the default recipe), are used where present.

Throughput: texts per CPU-second labelling a seeded sample of the dataset's training texts (what a transfer set
holds), batches of 64 sorted by length as `Teacher.logits` runs them, no logit cache, one torch thread and the
tokenizer on the same thread. CPU-seconds of this process are one core's throughput, which stays meaningful on a
machine shared with other jobs (wall-clock rates are in the JSON); fp32 and int8 are timed in alternating rounds
so that load from other processes hits both alike, and the median round is reported. On a GPU the rate is per
wall-clock second. Accuracy:
on the test split (a stratified sample when capped), the same texts for every precision; the int8 teacher is the
one `--label-precision int8` labels with (torch dynamic quantization of every nn.Linear, activations in 8 bits
where the CPU's kernels allow it; there torch's own 7-bit path is measured beside it). Teachers over 50M
parameters (mpnet-base) get the smaller `--texts-large` / `--test-size-large` caps so that a run fits ~10 minutes.
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the tokenizer on the timed thread: one core in all

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from tinydistill.data import PAPER_DATASETS, load_paper_dataset, stratified_sample  # noqa: E402
from tinydistill.device import cache_tag, int8_full_range  # noqa: E402
from tinydistill.errors import TinyDistillError  # noqa: E402
from tinydistill.finetune import get_recipe  # noqa: E402
from tinydistill.folders import cache_root, logit_cache_path  # noqa: E402
from tinydistill.logitcache import LogitCache  # noqa: E402
from tinydistill.teacher import Teacher  # noqa: E402

DEFAULT_LABELS = {"sst2": 200, "agnews": 400}  # the T-train sizes of the cached MiniLM teachers
LARGE = 50_000_000  # parameters above which a teacher gets the smaller caps


def teacher_folder(path: str) -> Path:
    folder = Path(path).expanduser()
    for place in (folder / "teacher", folder):
        if (place / "teacher.json").exists():
            return place
    raise TinyDistillError(f"{folder}: neither a teacher folder (teacher.json) nor a run folder (teacher/)")


def cached_minilm(dataset: str) -> Path | None:
    """The MiniLM teacher `tinydistill run --data DATASET --labeled N --seed 0` put in the shared cache."""
    names = load_paper_dataset(dataset, PAPER_DATASETS[dataset].test).label_names
    recipe = get_recipe("strong", seed=0).to_info()
    for meta_path in sorted((cache_root() / "teachers").glob("*/teacher.json")):
        meta = json.loads(meta_path.read_text())
        if (meta.get("base") == "minilm" and meta.get("labels") == names and meta.get("recipe") == recipe
                and meta.get("training", {}).get("labels_trained") == DEFAULT_LABELS[dataset]):
            return meta_path.parent
    return None


def describe(teacher: Teacher) -> str:
    recipe = teacher.info.get("recipe", {})
    name = "paper" if recipe.get("epochs") == 3 and recipe.get("lr") == 5e-5 and recipe.get("pooling") == "cls" \
        else "strong" if recipe.get("min_steps") == 300 else "other"
    steps = teacher.info.get("training", {}).get("steps")
    return f"{teacher.info.get('base', '?')} ({name} recipe, {steps} steps)"


def rate(teacher: Teacher, texts: list[str]) -> tuple[float, float]:
    """Texts per CPU-second of this process (per wall-clock second on a GPU), and per wall-clock second."""
    cpu, wall = time.process_time(), time.perf_counter()
    teacher.logits(texts, batch_size=64, progress=False)
    if teacher.device.type == "cuda":
        torch.cuda.synchronize(teacher.device)
        return (len(texts) / (time.perf_counter() - wall),) * 2
    return len(texts) / (time.process_time() - cpu), len(texts) / (time.perf_counter() - wall)


def bench(dataset: str, folder: Path, a: argparse.Namespace, cache: LogitCache | None) -> dict:
    fp32 = Teacher.from_pretrained(folder)
    large = fp32.n_parameters() > LARGE
    n_texts = a.texts_large if large else a.texts
    test_cap = a.test_size_large if large else a.test_size
    train = load_paper_dataset(dataset, PAPER_DATASETS[dataset].train, a.data_dir)
    test = load_paper_dataset(dataset, PAPER_DATASETS[dataset].test, a.data_dir)
    if test_cap and test_cap < len(test):
        test = stratified_sample(test, test_cap, 0)[0]
    pick = np.sort(np.random.default_rng(0).choice(len(train), min(n_texts, len(train)), replace=False))
    texts = [train.texts[i] for i in pick]
    teachers = {"fp32": fp32, "int8": fp32.int8()}
    if int8_full_range():  # the int8 teacher's activations have 8 bits here: torch's own 7-bit path beside it
        teachers["int8 7-bit"] = fp32.int8(full_range=False)
    if torch.cuda.is_available() and not a.no_gpu:
        import copy

        gpu = copy.deepcopy(fp32).to("cuda")
        teachers[f"cuda {gpu.precision}"] = gpu
    for t in teachers.values():  # warm-up: first-call costs (allocations, kernels) out of the timing
        rate(t, texts[:64])
    rounds: dict[str, list[tuple[float, float]]] = {k: [] for k in teachers}
    for _ in range(a.rounds):
        for name, t in teachers.items():
            rounds[name].append(rate(t, texts))
    gold = np.asarray(test.labels)
    row = {"dataset": dataset, "teacher": describe(fp32), "folder": str(folder), "params": fp32.n_parameters(),
           "max_length": fp32.max_length, "timed_texts": len(texts), "test_texts": len(test), "rounds": a.rounds}
    predictions = {}
    for name, t in teachers.items():
        predictions[name] = t.logits(test.texts, cache=cache, progress=False).argmax(1)
        row[name] = {"texts_per_s": statistics.median(r[0] for r in rounds[name]),
                     "wall_texts_per_s": statistics.median(r[1] for r in rounds[name]),
                     "all_rounds": rounds[name], "accuracy": float((predictions[name] == gold).mean())}
    row["int8_agreement"] = float((predictions["int8"] == predictions["fp32"]).mean())
    row["int8_scheme"] = cache_tag("int8")
    if "int8 7-bit" in predictions:
        row["int8 7-bit"]["agreement"] = float((predictions["int8 7-bit"] == predictions["fp32"]).mean())
    return row


def table(rows: list[dict]) -> str:
    gpu = sorted({k for r in rows for k in r if k.startswith("cuda ")})
    head = ("| teacher | data | params | timed / test texts | fp32 texts/CPU-s | int8 texts/CPU-s | int8/fp32 | "
            "fp32 acc | int8 acc | Δ acc | int8=fp32 labels |" + "".join(f" {g} texts/s | {g} acc |" for g in gpu))
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        f, q = r["fp32"], r["int8"]
        cells = [r["teacher"], r["dataset"], f"{r['params'] / 1e6:.1f}M", f"{r['timed_texts']:,} / {r['test_texts']:,}",
                 f"{f['texts_per_s']:,.0f}", f"{q['texts_per_s']:,.0f}", f"x{q['texts_per_s'] / f['texts_per_s']:.2f}",
                 f"{100 * f['accuracy']:.1f}", f"{100 * q['accuracy']:.1f}",
                 f"{100 * (q['accuracy'] - f['accuracy']):+.1f}", f"{100 * r['int8_agreement']:.1f}%"]
        for g in gpu:
            cells += [f"{r[g]['texts_per_s']:,.0f}", f"{100 * r[g]['accuracy']:.1f}"] if g in r else ["-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    seven = [r for r in rows if "int8 7-bit" in r]
    if seven:
        lines += ["", "int8 with 8-bit activations (what `--label-precision int8` uses on this CPU) against torch's "
                  "own 7 bits:", "", "| teacher | data | 8-bit texts/CPU-s | 7-bit texts/CPU-s | 8-bit acc | 7-bit acc "
                  "| 8-bit=fp32 labels | 7-bit=fp32 labels |", "|---|---|---|---|---|---|---|---|"]
        for r in seven:
            q, s = r["int8"], r["int8 7-bit"]
            lines.append(f"| {r['teacher']} | {r['dataset']} | {q['texts_per_s']:,.0f} | {s['texts_per_s']:,.0f} | "
                         f"{100 * q['accuracy']:.1f} | {100 * s['accuracy']:.1f} | {100 * r['int8_agreement']:.1f}% | "
                         f"{100 * s['agreement']:.1f}% |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", action="append", default=[], metavar="DATASET=FOLDER",
                        help="a fine-tuned teacher and the paper dataset it was trained on (repeatable)")
    parser.add_argument("--texts", type=int, default=1000, help="training texts timed per teacher (default 1000)")
    parser.add_argument("--texts-large", type=int, default=300, help="the same for teachers over 50M parameters")
    parser.add_argument("--test-size", type=int, help="test texts scored (default: the whole test split)")
    parser.add_argument("--test-size-large", type=int, default=1000, help="the same for teachers over 50M "
                        "parameters (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds; the median is reported")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--data-dir", help="folder laid out like shared/data (default: $TINYDISTILL_DATA)")
    parser.add_argument("--no-cache", action="store_true", help="score without the shared logit cache")
    parser.add_argument("--no-gpu", action="store_true", help="leave a GPU out even where torch sees one")
    parser.add_argument("--json", help="also write the rows here")
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    pairs = [tuple(t.split("=", 1)) for t in a.teacher]
    if not pairs:
        pairs = [(ds, str(f)) for ds in DEFAULT_LABELS if (f := cached_minilm(ds)) is not None]
    if not pairs:
        raise SystemExit("no teachers: pass --teacher sst2=FOLDER (a train-teacher or run folder)")
    cache = None if a.no_cache else LogitCache(logit_cache_path())
    print(f"torch {torch.__version__}, {a.threads} thread(s), quantized engine {torch.backends.quantized.engine}, "
          f"int8 activations in {8 if int8_full_range() else 7} bits; "
          f"GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() and not a.no_gpu else 'none'}")
    rows = []
    started = time.time()
    for dataset, path in pairs:
        if dataset not in PAPER_DATASETS:
            raise SystemExit(f"--teacher {dataset}={path}: expected one of {sorted(PAPER_DATASETS)}")
        folder = teacher_folder(path)
        t0 = time.time()
        rows.append(bench(dataset, folder, a, cache))
        r = rows[-1]
        print(f"{r['teacher']} on {dataset} ({folder}): fp32 {r['fp32']['texts_per_s']:.0f}, int8 "
              f"{r['int8']['texts_per_s']:.0f} texts/CPU-s (wall {r['fp32']['wall_texts_per_s']:.0f}, "
              f"{r['int8']['wall_texts_per_s']:.0f}); accuracy {100 * r['fp32']['accuracy']:.1f} / "
              f"{100 * r['int8']['accuracy']:.1f} ({time.time() - t0:.0f}s)", flush=True)
    print()
    print(table(rows))
    print(f"\nTimed (texts per CPU-second of one thread; wall-clock rates in the log lines above and the JSON): a "
          f"seeded sample of each training split ({a.texts:,} texts; {a.texts_large:,} for teachers over "
          f"50M parameters), batches of 64, median of {a.rounds} alternating rounds, tokenization included. Test: "
          f"{'the whole split' if not a.test_size else f'{a.test_size:,} texts'} ({a.test_size_large:,} for teachers "
          f"over 50M parameters). Teachers named '(paper recipe, N steps)' had their heads trained with the short "
          f"paper recipe (3 epochs, lr 5e-5, batch 16). {time.time() - started:.0f}s in all.")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
