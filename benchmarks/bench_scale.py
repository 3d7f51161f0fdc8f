"""Labelling on Ray: texts/s of one worker and of two (one thread each), and the driver's memory on 1M texts.

    python benchmarks/bench_scale.py --data-dir ../shared/data                    # scaling, MiniLM, 8000 texts
    python benchmarks/bench_scale.py --texts 0 --memory 1000000                   # driver memory on 1M texts

Scaling: the same SST-2 training texts (a Parquet file) are labelled through ``--engine ray`` by one actor,
then by two, on a local Ray of 2 CPUs started once beforehand (so its start-up is not timed; each run's
actors load the teacher inside the timing). It prints texts/s end to end, and steady (texts of the shards
after each actor's first, over the time from then to the last). The teacher is the packaged MiniLM with a
random two-class head (the same arithmetic as a fine-tuned one) or ``--teacher FOLDER``. The runs alternate
``--repeats`` times; the best of each is kept. A control before and after (two processes against one on a
fixed pure-Python loop) shows how much parallelism the machine gave at the time: on a shared machine the
engine's ratio cannot exceed it.

Memory: ``--memory N`` writes N synthetic sentences (words drawn from SST-2's vocabulary) to a Parquet file in
a child process, then labels them through the ray engine with a tiny random BERT (2 layers, hidden 32) in
another child process and prints that driver's peak RSS (``resource.getrusage``); Ray's actors are other
processes. The output folder is kept (``--work``), so a killed run resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tinydistill.data import load_paper_dataset
from tinydistill.folders import atomic_output


def random_head_teacher(base: str, folder: Path, labels=("negative", "positive"), max_length: int = 128) -> str:
    """Save ``base`` (a short name or folder) with a seeded random classification head as a teacher folder."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from tinydistill.bases import resolve_teacher
    from tinydistill.teacher import Classifier, Teacher

    if not (folder / "teacher.json").exists():
        path = resolve_teacher(base)
        torch.manual_seed(0)
        model = Classifier(AutoModel.from_pretrained(path), len(labels), "mean").eval()
        Teacher(model, AutoTokenizer.from_pretrained(path), list(labels), max_length).save_pretrained(folder)
    return str(folder)


def tiny_teacher(words: list[str], folder: Path) -> str:
    """A random 2-layer BERT (hidden 32) over a word-piece vocabulary of ``words``, saved as a teacher."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from tinydistill.teacher import Classifier, Teacher

    if not (folder / "teacher.json").exists():
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
        tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
        torch.manual_seed(0)
        config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=37, max_position_embeddings=64)
        model = Classifier(BertModel(config), 2, "cls").eval()
        Teacher(model, tokenizer, ["negative", "positive"], 32).save_pretrained(folder)
    return str(folder)


def _spin(_: int) -> int:
    total = 0
    for i in range(20_000_000):
        total += i * i
    return total


def machine_ratio() -> float:
    """Work/s of two processes over one on a fixed pure-Python loop: the parallelism the machine gives now.

    On a quiet 2-core machine it is ~2; when other jobs hold the cores it falls, and so does any engine's."""
    import multiprocessing

    rates = {}
    for n in (1, 2):
        start = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(n) as pool:
            pool.map(_spin, range(n))
        rates[n] = n / (time.perf_counter() - start)
    return rates[2] / rates[1]


def padding_check(teacher_dir: str, texts: list[str]) -> str:
    """Does the batch a text is labelled in move its logits? (The teacher pads each batch to its longest.)"""
    import numpy as np
    import torch

    from tinydistill.teacher import Teacher

    torch.set_num_threads(1)
    teacher, texts = Teacher.from_pretrained(teacher_dir), texts[:256]
    whole = teacher.logits(texts, batch_size=64, progress=False)
    again = teacher.logits(texts, batch_size=64, progress=False)
    halves = np.concatenate([teacher.logits(texts[:128], batch_size=64, progress=False),
                             teacher.logits(texts[128:], batch_size=64, progress=False)])
    diff = np.abs(whole - halves).max(1)
    return (f"padding: the same batches twice bit-identical: {np.array_equal(whole, again)}; in other batches "
            f"{int((diff > 0).sum())} of {len(texts)} texts' logits move, by up to {diff.max():.3g}")


def scaling(args: argparse.Namespace, work: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    from tinydistill.scale import ray_engine
    from tinydistill.shards import label_to_shards

    texts = load_paper_dataset("sst2", "train", args.data_dir).texts[: args.texts]
    source = work / "scaling-texts.parquet"
    pq.write_table(pa.table({"text": texts}), source)
    teacher = args.teacher or random_head_teacher("minilm", work / "minilm-random-head")
    print(padding_check(teacher, texts), flush=True)
    control = machine_ratio()
    print(f"control: two processes do {control:.2f}x the pure-Python work of one right now", flush=True)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rates: dict[int, list[float]] = {1: [], 2: []}
    steadies: dict[int, list[float]] = {1: [], 2: []}
    for repeat in range(args.repeats):
        for workers in (1, 2):
            out = work / f"scaling-{workers}"
            shutil.rmtree(out, ignore_errors=True)
            engine = ray_engine(workers=workers, threads_per_worker=1)
            done: list[tuple[float, int]] = []  # (time, rows) of each shard as it comes back

            def timed(*a, engine=engine, done=done):
                for index, entry in engine(*a):
                    done.append((time.perf_counter(), entry["rows"]))
                    yield index, entry

            start = time.perf_counter()
            label_to_shards(teacher, str(source), str(out), rows_per_shard=args.shard_rows, batch_size=64,
                            engine=timed, progress=False)
            seconds = time.perf_counter() - start
            # steady state: the shards after the first `workers` (actor start-up and teacher loading excluded)
            steady = sum(r for _, r in done[workers:]) / (done[-1][0] - done[workers - 1][0])
            rates[workers].append(len(texts) / seconds)
            steadies[workers].append(steady)
            print(f"repeat {repeat}: {workers} worker(s): {len(texts)} texts in {seconds:6.1f} s = "
                  f"{len(texts) / seconds:7.1f} texts/s end to end, {steady:7.1f} texts/s steady", flush=True)
    ray.shutdown()
    best = {w: max(r) for w, r in rates.items()}
    best_steady = {w: max(r) for w, r in steadies.items()}
    print(json.dumps({"texts": len(texts), "shard_rows": args.shard_rows, "teacher": teacher,
                      "one_worker_texts_per_s": round(best[1], 1), "two_workers_texts_per_s": round(best[2], 1),
                      "ratio": round(best[2] / best[1], 2), "one_worker_steady": round(best_steady[1], 1),
                      "two_workers_steady": round(best_steady[2], 1),
                      "steady_ratio": round(best_steady[2] / best_steady[1], 2),
                      "control_ratio_before": round(control, 2), "control_ratio_after": round(machine_ratio(), 2),
                      "load_average": os.getloadavg()}))


def write_synthetic(path: Path, n: int, words: list[str]) -> None:
    """N sentences of 4-16 words drawn (seeded) from ``words``, in row groups, never all in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(0)
    with atomic_output(path) as handle, pq.ParquetWriter(handle, pa.schema([("text", pa.string())])) as writer:
        for start in range(0, n, 100_000):
            rows = [" ".join(rng.choices(words, k=rng.randint(4, 16))) for _ in range(min(100_000, n - start))]
            writer.write_table(pa.table({"text": rows}))


def memory_child(args: argparse.Namespace, work: Path) -> None:
    """In a child process: label the synthetic set through the ray engine; print peak RSS of this driver."""
    import resource

    import ray

    from tinydistill.scale import ray_engine
    from tinydistill.shards import label_to_shards

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    start = time.perf_counter()
    manifest = label_to_shards(str(work / "tiny-teacher"), str(work / f"synthetic-{args.memory}.parquet"),
                               str(work / f"synthetic-{args.memory}-logits"), rows_per_shard=args.memory_shard_rows,
                               batch_size=256, engine=ray_engine(workers=2, threads_per_worker=1), progress=True)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"texts": manifest["rows"], "shards": len(manifest["shards"]),
                      "labelled_now": manifest["labelled"], "seconds": round(seconds, 1),
                      "driver_peak_rss_mib": round(peak_mib, 1), "load_average": os.getloadavg()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("TINYDISTILL_DATA"), help="shared data folder")
    parser.add_argument("--teacher", help="teacher folder (default: MiniLM with a random head, saved in --work)")
    parser.add_argument("--texts", type=int, default=8000, help="SST-2 texts for the scaling runs (0: skip)")
    parser.add_argument("--shard-rows", type=int, default=100, help="texts per shard in the scaling runs")
    parser.add_argument("--repeats", type=int, default=1, help="alternating 1-worker/2-worker runs; best is kept")
    parser.add_argument("--memory", type=int, default=0, help="synthetic texts for the memory run (0: skip)")
    parser.add_argument("--memory-shard-rows", type=int, default=10_000)
    parser.add_argument("--work", default="/tmp/tinydistill-bench-scale", help="folder for inputs and outputs")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.child:
        memory_child(args, work)
        return
    if args.texts:
        scaling(args, work)
    if args.memory:
        words = sorted({w for t in load_paper_dataset("sst2", "train", args.data_dir).texts for w in t.split()})
        if not (work / f"synthetic-{args.memory}.parquet").exists():
            write_synthetic(work / f"synthetic-{args.memory}.parquet", args.memory, words)
        tiny_teacher(words, work / "tiny-teacher")
        # a fresh process: the driver's peak RSS is the labelling's alone, not the generation's
        subprocess.run([sys.executable, __file__, *sys.argv[1:], "--child"], check=True)


if __name__ == "__main__":
    main()
