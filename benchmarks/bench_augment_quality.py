"""What an augmented pool buys: students distilled on (training split + pool) against the training split alone.

Same teacher (trained once, reused from the cache), same labels, same seed; only the transfer set differs.

    tinydistill augment --data sst2 --size 200000 --out pools/sst2-200k
    python benchmarks/bench_augment_quality.py --data sst2 --labeled 200 --pool pools/sst2-200k
"""

from __future__ import annotations

import argparse
import json
import logging
import time

from tinydistill.config import RunConfig
from tinydistill.pipeline import run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--labeled", type=int, required=True)
    p.add_argument("--pool", required=True, help="pool folder written by `tinydistill augment`")
    p.add_argument("--data-dir")
    p.add_argument("--students", default="cbow,bilstm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/augment-quality")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    results = {}
    for name, transfer in (("train split", []), ("train split + pool", [a.pool])):
        started = time.time()
        config = RunConfig(data=a.data, data_dir=a.data_dir, labeled=a.labeled, students=a.students.split(","),
                           transfer=transfer, nods=False, speed=False, seed=a.seed,
                           out=f"{a.out}/{a.data}-{a.labeled}-s{a.seed}-{'pool' if transfer else 'train'}")
        out = run(config)
        results[name] = {"transfer": out["sizes"]["transfer"], "seconds": round(time.time() - started),
                         "rows": {r["model"]: r["headline"] for r in out["rows"]}, "metric": out["metric"]}
    metric = results["train split"]["metric"].upper()
    print(f"\n{a.data}, {a.labeled} labels, seed {a.seed} ({metric} x100)")
    print("| transfer set | size | " + " | ".join(results["train split"]["rows"]) + " |")
    for name, r in results.items():
        print(f"| {name} | {r['transfer']:,} | " + " | ".join(f"{100 * v:.1f}" for v in r["rows"].values()) + " |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
