"""Augmentation speed on SST-2's training split: sentences/s per method, and the wall time of a GloVe pool.

    python benchmarks/bench_augment.py --data-dir ../shared/data            # full run, 1M-sentence pool
    python benchmarks/bench_augment.py --pool-size 100000 --bert-base-sentences 0

The MLM is a tiny random BertForMaskedLM (2 layers, hidden 32) over a word-level tokenizer of the split's own
words, built here: its rate measures the batching machinery, not bert-base-uncased. ``--bert-base-sentences``
times a random model of bert-base's shape on a sample to estimate the real cost.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter

import torch

from tinydistill import augment, pools
from tinydistill.data import load_paper_dataset


def tiny_mlm(texts: list[str], vocab_size: int = 5000, **shape):
    """A random BertForMaskedLM and a word-level tokenizer over the most frequent words of ``texts``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    counts = Counter(w for t in texts for w in t.lower().split())
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = specials + [w for w, _ in counts.most_common(vocab_size - len(specials))]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                        mask_token="[MASK]", cls_token="[CLS]", sep_token="[SEP]")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=max(len(words), shape.pop("vocab_size", 0)), **shape)
    return BertForMaskedLM(config).eval(), tokenizer


def timed(label: str, texts: list[str], **kwargs) -> None:
    """Time the set-up (candidates) and the generation of ``iter_augmented`` separately."""
    start = time.perf_counter()
    variants = augment.iter_augmented(texts, **kwargs)
    ready = time.perf_counter()
    count = sum(1 for _ in variants)
    done = time.perf_counter()
    print(f"{label:<40} {count:>7} variants  set-up {ready - start:5.1f} s  "
          f"generation {count / (done - ready):>7,.0f}/s  overall {count / (done - start):>7,.0f}/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("TINYDISTILL_DATA"), help="shared data folder")
    parser.add_argument("--pool-size", type=int, default=1_000_000, help="timed GloVe pool's size (0: skip)")
    parser.add_argument("--bert-base-sentences", type=int, default=100,
                        help="sentences to score with a random bert-base-shaped MLM (0: skip)")
    # on a busy shared box two spinning OpenMP threads can make small torch ops 20x slower than one
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if not args.data_dir:
        parser.error("set --data-dir or TINYDISTILL_DATA")
    if args.threads:
        torch.set_num_threads(args.threads)
    texts = load_paper_dataset("sst2", "train", data_dir=args.data_dir).texts
    print(f"sst2/train: {len(texts)} sentences; {torch.get_num_threads()} torch threads, {os.cpu_count()} "
          f"cores, load average {os.getloadavg()[0]:.1f}; n=20 p=0.4 k=15 seed=0")

    start = time.perf_counter()
    table = augment.glove_neighbours(texts, k=15)
    seconds = time.perf_counter() - start
    print(f"GloVe neighbour table (the 'glove' set-up): {len(table)} words in {seconds:.1f} s")
    timed("glove (table built)", texts, method="glove", neighbours=table)
    timed("tang (TextBlob PatternTagger)", texts, method="tang")
    timed("mlm: TINY random BERT (2x32), batch 32", texts, method="mlm", mlm=tiny_mlm(
        texts, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37),
        neighbours=table)

    if args.bert_base_sentences:
        sample = texts[: args.bert_base_sentences]
        model, tokenizer = tiny_mlm(texts, vocab_size=30522)  # BertConfig's defaults are bert-base's shape
        rows = sum(1 for pieces in map(augment.split_words, sample) for _ in augment._eligible(pieces))
        start = time.perf_counter()
        augment.mlm_candidates(model, tokenizer, sample, k=15)
        seconds = time.perf_counter() - start
        minutes = len(texts) * seconds / len(sample) / 60
        print(f"mlm: random bert-base shape (110M), {len(sample)} sentences ({rows} masked rows): "
              f"{seconds:.1f} s, {rows / seconds:.0f} rows/s -> the whole split's candidates in "
              f"~{minutes:.0f} min, then generation as fast as glove")

    if args.pool_size:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            pools.augment_command("sst2", "train", args.pool_size, out, data_dir=args.data_dir)
            seconds = time.perf_counter() - start
            manifest = json.loads(open(os.path.join(out, "manifest.json")).read())
            lines = sum(shard["lines"] for shard in manifest["shards"])
            size = sum(os.path.getsize(os.path.join(out, name)) for name in os.listdir(out))
        print(f"pool: augment_command('sst2', 'train', {args.pool_size}) with glove: {lines} sentences in "
              f"{seconds:.1f} s wall ({lines / seconds:,.0f}/s, GloVe set-up in), {size / 1e6:.0f} MB "
              "of shards")


if __name__ == "__main__":
    main()
