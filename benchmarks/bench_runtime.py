"""Raw text to labels on one core: the numpy runtime (float and int8) beside the torch student and fastText.

    TINYDISTILL_DATA=../shared/data python benchmarks/bench_runtime.py --students cbow,bilstm,cnn

Texts are sst2 test + train (8,741 sentences), fed in batches of 1000; tokenisation is included everywhere.
Contenders are timed in interleaved rounds (one pass over all texts each, `--rounds` times) so that load from
other processes hits them alike; the median round is reported, with ratios to the torch student and to
fastText. Rates are texts per CPU-second of this single-threaded process (one core's throughput, which stays
meaningful on a machine shared with other jobs); wall-clock rates are printed after them. Students are trained
for a few steps on sst2 train (speed does not depend on accuracy) unless `--run` names a run folder with
`students/<name>/`. CBoW students are also timed with their word sums on the numpy gather (`numpy only`, the
path without scipy) beside scipy's sparse product, with the ratio. Also checks: runtime vs torch probabilities
(max |diff|) and int8 vs float label agreement on the test split.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one core, set before numpy loads
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from tinydistill import forwards, runtime  # noqa: E402
from tinydistill.data import load_paper_dataset, resolve_data_dir  # noqa: E402
from tinydistill.errors import TinyDistillError  # noqa: E402
from tinydistill.export import export  # noqa: E402


def batches(texts: list[str], size: int) -> list[list[str]]:
    return [texts[i:i + size] for i in range(0, len(texts), size)]


def get_students(names: list[str], run: str | None, train, folder: Path) -> dict[str, Path]:
    """Student folders: from the run folder, else trained briefly on sst2 train (hard labels)."""
    from tinydistill.distill import TrainConfig
    from tinydistill.students import Student

    out = {}
    for name in names:
        if run:
            out[name] = Path(run) / "students" / name
            continue
        started = time.perf_counter()
        student = Student(name, train=TrainConfig(epochs=1, min_steps=40, max_steps=40)).fit(
            train.texts, np.asarray(train.label_names)[train.labels], train.label_names, progress=False)
        out[name] = student.save_pretrained(folder / name)
        print(f"trained {name} for 40 steps in {time.perf_counter() - started:.1f}s")
    return out


def fasttext_predict(train):
    """fastText's own predict on the same texts (newlines folded, as fastText needs), or None if missing."""
    try:
        import fasttext  # noqa: F401
    except ImportError:
        print("fastText: missing (import fasttext failed); its column is skipped")
        return None
    from tinydistill.paper.peers import FastText

    peer = FastText(epoch=5).fit(train.texts, train.labels)
    model = peer.model_
    return lambda batch: model.predict([" ".join(t.split()) for t in batch], k=1)[0]


def numpy_only(predict):
    """`predict` with the CBoW's word sums on the numpy gather path (as without scipy), for the side-by-side."""
    def run(batch):
        saved, forwards.SPARSE_FROM = forwards.SPARSE_FROM, 10**9
        try:
            return predict(batch)
        finally:
            forwards.SPARSE_FROM = saved
    return run


def measure(contenders: dict, texts: list[str], batch_size: int, rounds: int) -> tuple[dict, dict]:
    """Median texts per CPU-second and per wall-second of each contender over `rounds` interleaved passes."""
    chunks = batches(texts, batch_size)
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    wall: dict[str, list[float]] = {name: [] for name in contenders}
    for predict in contenders.values():
        predict(chunks[0])  # warm-up
    for _ in range(rounds):
        for name, predict in contenders.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            for chunk in chunks:
                predict(chunk)
            cpu[name].append(len(texts) / (time.process_time() - started_cpu))
            wall[name].append(len(texts) / (time.perf_counter() - started))
    return ({name: statistics.median(r) for name, r in cpu.items()},
            {name: statistics.median(r) for name, r in wall.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder laid out like shared/data (default: $TINYDISTILL_DATA)")
    parser.add_argument("--students", default="cbow,bilstm,cnn")
    parser.add_argument("--run", help="a run folder whose students/<name>/ to use instead of training")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    folder_data = resolve_data_dir(args.data_dir)
    if folder_data is None:
        raise SystemExit("set --data-dir or $TINYDISTILL_DATA to a folder laid out like shared/data")
    train = load_paper_dataset("sst2", "train", folder_data)
    test = load_paper_dataset("sst2", "test", folder_data)
    texts = test.texts + train.texts
    print(f"{len(texts)} sst2 texts (test + train), batches of {args.batch_size}, one thread, "
          f"{args.rounds} interleaved rounds, median")
    fast = fasttext_predict(train)

    from tinydistill.students import Student

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp:
        folders = get_students([s.strip() for s in args.students.split(",") if s.strip()], args.run, train,
                               Path(tmp))
        for name, folder in folders.items():
            student = Student.from_pretrained(folder)
            model = runtime.load(folder)
            int8 = runtime.load(export(folder, Path(tmp) / f"{name}-int8", "int8")[0])
            contenders = {"runtime": model.predict, "int8": int8.predict,
                          "torch": lambda b, s=student: s.predict(b)}
            if name.startswith("cbow") and forwards._csr_matrix() is not None:
                contenders["numpy only"] = numpy_only(model.predict)
            if fast is not None:
                contenders["fasttext"] = fast
            rate, wall = measure(contenders, texts, args.batch_size, args.rounds)
            # torch batches sort by length; its CNN lets short texts' windows run into the batch's padding,
            # so the CNN is compared one text at a time (see forwards._CNN)
            probe = test.texts if name != "cnn" else test.texts[:300]
            if name == "cnn":
                ref = np.concatenate([student.predict_proba([t]) for t in probe])
            else:
                ref = student.predict_proba(probe)
            diff = float(np.abs(model.predict_proba(probe) - ref).max())
            agree = float(np.mean(np.array(int8.predict(test.texts)) == np.array(model.predict(test.texts))))
            rows.append((name, rate, wall, diff, agree))

    print("\ntexts per CPU-second (one core); int8 agree = int8 labels equal float labels on sst2 test")
    print(f"{'student':8} {'runtime':>9} {'int8':>9} {'torch':>9} {'fastText':>9} {'rt/torch':>9} "
          f"{'rt/fastText':>12} {'max|p-torch|':>13} {'int8 agree':>11}")
    for name, rate, _, diff, agree in rows:
        ft = rate.get("fasttext")
        ft_rate, ft_ratio = (f"{ft:,.0f}", f"{rate['runtime'] / ft:.2f}") if ft else ("missing", "-")
        print(f"{name:8} {rate['runtime']:9,.0f} {rate['int8']:9,.0f} {rate['torch']:9,.0f} {ft_rate:>9} "
              f"{rate['runtime'] / rate['torch']:9.2f} {ft_ratio:>12} {diff:13.1e} {agree:11.2%}")
    sums = [(name, rate) for name, rate, *_ in rows if "numpy only" in rate]
    if sums:
        print("\nCBoW word sums by scipy's sparse product (the runtime's path for batches of "
              f"{forwards.SPARSE_FROM}+ texts) against the numpy gather it falls back on without scipy")
        for name, rate in sums:
            print(f"{name:9} runtime {rate['runtime']:,.0f}  numpy only {rate['numpy only']:,.0f}  "
                  f"ratio {rate['runtime'] / rate['numpy only']:.2f}")
    print(f"\nwall-clock texts/s (load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    for name, _, wall, _, _ in rows:
        print(f"{name:8} " + " ".join(f"{k} {v:,.0f}" for k, v in wall.items()))


if __name__ == "__main__":
    try:
        main()
    except TinyDistillError as exc:
        raise SystemExit(f"bench_runtime: error: {exc}") from None
