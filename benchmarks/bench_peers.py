"""Peers on a paper dataset: train on a seeded stratified sample of labels, score on the paper's test split.

    TINYDISTILL_DATA=../shared/data python benchmarks/bench_peers.py sst2 --labels 200 --peers tfidf-lr

Prints one row per peer: accuracy, macro-F1, the paper's headline F1 (or MCC), training seconds, batched
throughput (texts/s, batches of 256) and learned parameters. Add `--json FILE` to keep the numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

from tinydistill.data import PAPER_DATASETS, load_paper_dataset, resolve_data_dir, stratified_sample
from tinydistill.errors import TinyDistillError
from tinydistill.evaluate import headline, scores, throughput
from tinydistill.paper.peers import PEERS


def bench(dataset: str, labels: int, peers: list[str], data_dir: str | None, seed: int,
          cache_dir: str | None) -> list[dict]:
    """Train each peer on the same sample and measure it on the same test split."""
    folder = resolve_data_dir(data_dir)
    if folder is None:
        raise TinyDistillError("set --data-dir or $TINYDISTILL_DATA to a folder laid out like shared/data")
    spec = PAPER_DATASETS[dataset]
    sample, _ = stratified_sample(load_paper_dataset(dataset, spec.train, folder), labels, seed)
    test = load_paper_dataset(dataset, spec.test, folder)
    n_classes = len(test.label_names)
    rows = []
    for name in peers:
        options = {"cache_dir": cache_dir} if name == "model2vec" else {}
        peer = PEERS[name](**options)
        started = time.perf_counter()
        peer.fit(sample.texts, sample.labels)
        fit_seconds = time.perf_counter() - started
        result = scores(test.labels, peer.predict(test.texts), n_classes)
        rows.append({"peer": name, "dataset": dataset, "labels": labels, "seed": seed, **result,
                     "headline": headline(spec.metric, result), "fit_s": fit_seconds,
                     "texts_per_s": throughput(peer.predict, test.texts, batch_size=256),
                     "n_parameters": getattr(peer, "n_parameters", None)})
        logging.info("%s done: %s", name, rows[-1])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(PAPER_DATASETS))
    parser.add_argument("--labels", type=int, default=200, help="size of the stratified labelled sample")
    parser.add_argument("--peers", default="fasttext,model2vec,tfidf-lr",
                        help=f"comma-separated, from {sorted(PEERS)}; setfit takes minutes")
    parser.add_argument("--data-dir", help="folder laid out like shared/data (default: $TINYDISTILL_DATA)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", help="where model2vec's distilled static model is kept")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    rows = bench(args.dataset, args.labels, args.peers.split(","), args.data_dir, args.seed, args.cache_dir)
    print("| peer | accuracy | macro-F1 | headline | fit s | texts/s | parameters |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['peer']} | {r['accuracy']:.3f} | {r['macro_f1']:.3f} | {r['headline']:.3f} | "
              f"{r['fit_s']:.1f} | {r['texts_per_s']:,.0f} | {r['n_parameters'] or '-':,} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
