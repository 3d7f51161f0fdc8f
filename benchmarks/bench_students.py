"""CBoW-class student variants distilled from the same teacher on the same transfer logits, side by side.

    TINYDISTILL_DATA=../shared/data python benchmarks/bench_students.py runs/cal-sst2-s0 runs/cal-sst2-s1 \
        --variants paper,wide,teacher16,teacher64 --out results/students-sst2

Each argument is a run folder written by `tinydistill run` (its `config.resolved.json` names the data, seed and
teacher): the teacher and its logits come from that run's folder and the logit cache, and the transfer texts,
the calibration hold-out and the training settings are the run's, so every variant sees exactly what the run's
CBoW-FFN saw. Only the student changes:

- `paper`: the paper's CBoW-FFN (16-d embedding from GloVe's top principal directions, 64 hidden).
- `wide`: the same with a 64-d embedding (GloVe 50d mapped up by a fixed orthonormal matrix).
- `teacher16` / `teacher64`: the embedding starts from word vectors read out of the fine-tuned teacher itself
  (model2vec's idea applied to the teacher that knows the task): each vocabulary word passed alone through the
  teacher's encoder and pooled as its head reads it, reduced to the top principal directions.
- `hidden128`: `teacher64` with 128 hidden units.
- `mix16` / `mix64` (128 hidden): the teacher's word vectors and GloVe's side by side (each block scaled to unit
  RMS), reduced to their top principal directions together (`mix16` is what `run --teacher-vectors` does).
- `bigram16`: `paper` whose mean also runs over hashed word-bigram embeddings (10,000 buckets).
- `meanmax16` / `hier16`: `paper` whose FFN reads, beside the mean, the elementwise max of the word vectors
  (SWEM-max) or the max over the means of 3-word windows (SWEM-hier).
- `attn16`: the library's `cbow-attn`, whose FFN reads, beside the mean, a mean weighted by a softmax over a
  learned score of each word vector; `attnmix16` starts it from `mix16`'s embedding (`run --teacher-vectors`),
  `attn20k` gives it a 20,000-word vocabulary (`vocab20k`: the same for `paper`).
- `bilstm`: the library's BiLSTM, for reference.
- `model2vec`: not a student: the model2vec peer of Table 2 (the packaged MiniLM's static vectors) trained on the
  teacher's hard labels of the same transfer texts, the comparison issue 16 asks the CBoW-class students to beat.

A variant may add an augmentation pool to the transfer set: `paper+glove` trains on the run's transfer texts and
every text of the pool given as `--pool glove=DIR` (or a text file, as `run --transfer` reads it), labelled by
the run's teacher through the logit cache;
`paper+glove>0.9` keeps only the pool texts on which the teacher's top probability is at least 0.9. A pool path may
hold `{run}` (the run folder's name), for pools made from each run's own texts.

Small transfer sets: `--transfer-cap 3000` trains every variant on a seeded sample of 3,000 of the run's transfer
texts (its rows are named `VARIANT@3000`), and `--dump-transfer DIR` writes that sample to `DIR/{run}.txt`, so that
`tinydistill augment --data DIR/{run}.txt` grows a pool from what a user with 3,000 texts would have:

    python benchmarks/bench_students.py runs/cal-sst2-s0 --transfer-cap 3000 --dump-transfer pools/cap3000 --variants ''
    tinydistill augment --data pools/cap3000/cal-sst2-s0.txt --size 20000 --method glove --out pools/cal-sst2-s0-glove
    python benchmarks/bench_students.py runs/cal-sst2-s0 --transfer-cap 3000 --pool "glove=pools/{run}-glove" \
        --variants paper,paper+glove,bilstm,bilstm+glove

`--train FIELD=VALUE` overrides the students' training settings (`distill.TrainConfig`), e.g. `patience=40` for
a longer schedule; the rows' names carry it.

Prints and writes (`--out`.md/.json) per variant: the test metric, the teacher's, agreement with the teacher on
the test texts and on the transfer texts it trained on, and parameters; the JSON rows also hold the numpy
runtime's batched texts/s (the library students only), which only means something on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tinydistill import runtime
from tinydistill.bases import side_by_side, word_vectors
from tinydistill.calibration import calibration_split
from tinydistill.config import RunConfig
from tinydistill.distill import TrainConfig, fit_module
from tinydistill.evaluate import agreement, headline, scores
from tinydistill.folders import logit_cache_path
from tinydistill.logitcache import LogitCache
from tinydistill.paper.peers import Model2Vec
from tinydistill.paper.setup import DATASETS
from tinydistill.pipeline import choose_labeller, get_teacher
from tinydistill.runtime import softmax
from tinydistill.students import CBoWConfig, Student
from tinydistill.task import Task, load_task, read_transfer
from tinydistill.teacher import Teacher
from tinydistill.words import TokenizerConfig, Vocabulary, pad_ids

VARIANTS = {  # name: (embed_dim, hidden_dim, vectors from: "glove" | "teacher"); "bilstm": the library's BiLSTM
    "paper": (16, 64, "glove"),
    "wide": (64, 64, "glove"),
    "teacher16": (16, 64, "teacher"),
    "teacher64": (64, 64, "teacher"),
    "hidden128": (64, 128, "teacher"),
    "bigram16": (16, 64, "glove"),  # + hashed word bigrams (fastText's trick), BIGRAM_BUCKETS rows of their own
    "bigram16t": (16, 64, "teacher"),
    "mix16": (16, 64, "mix"),  # GloVe and the teacher's word vectors side by side, each block scaled to unit RMS
    "mix64": (64, 128, "mix"),
    "meanmax16": (16, 64, "glove"),  # the mean and the elementwise max of the word vectors, side by side (SWEM)
    "hier16": (16, 64, "glove"),  # the mean and the max over the means of 3-word windows (SWEM-hier: local order)
    "attn16": (16, 64, "glove"),  # the library's `cbow-attn`: the mean beside an attention-weighted mean
    "vocab20k": (16, 64, "glove"),  # `paper` with a 20,000-word vocabulary (VOCABULARY)
    "attn20k": (16, 64, "glove"),  # `attn16` with a 20,000-word vocabulary
    "attnmix16": (16, 64, "mix"),  # `attn16` starting from `mix16`'s embedding (`run --teacher-vectors`)
    "bilstm": (0, 0, "glove"),
    "model2vec": (0, 0, "glove"),  # not a student: the model2vec peer on the teacher's hard labels, as in Table 2
}
BIGRAM_BUCKETS = 10_000
VOCABULARY = {"vocab20k": 20_000, "attn20k": 20_000}  # variants whose vocabulary is not the paper's 5,000 words


class BigramCBoW(torch.nn.Module):
    """The CBoW-FFN whose mean also runs over hashed word-bigram embeddings (zero at the start, so training
    begins from the unigram model)."""

    def __init__(self, base: torch.nn.Module, buckets: int):
        super().__init__()
        self.embedding, self.ffn, self.buckets = base.embedding, base.ffn, buckets
        self.bigrams = torch.nn.Embedding(buckets + 1, base.embedding.embedding_dim, padding_idx=0)
        torch.nn.init.zeros_(self.bigrams.weight)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        pairs = (ids[:, :-1] > 0) & (ids[:, 1:] > 0)
        hashed = torch.where(pairs, (ids[:, :-1] * 1_000_003 + ids[:, 1:]) % self.buckets + 1, 0)
        total = self.embedding(ids).sum(1) + self.bigrams(hashed).sum(1)
        count = lengths + (lengths - 1).clamp(min=0)
        return self.ffn(total / count.clamp(min=1).unsqueeze(1).to(total.dtype))


class PooledCBoW(torch.nn.Module):
    """The CBoW-FFN whose FFN reads the mean of the word vectors beside a second pooling of them: `max` (the
    elementwise max over words) or `hier` (the max over the means of 3-word windows)."""

    def __init__(self, base: torch.nn.Module, pooling: str, window: int = 3):
        super().__init__()
        self.embedding, self.pooling, self.window = base.embedding, pooling, window
        first, last = base.ffn[0], base.ffn[-1]
        self.ffn = torch.nn.Sequential(torch.nn.Linear(2 * first.in_features, first.out_features), torch.nn.ReLU(),
                                       torch.nn.Dropout(base.ffn[2].p), last)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids)
        mask = (ids > 0).unsqueeze(2)
        mean = x.sum(1) / lengths.clamp(min=1).unsqueeze(1).to(x.dtype)
        if self.pooling == "max":
            second = x.masked_fill(~mask, float("-inf")).amax(1)
        else:  # hier: means of every window of `window` words (fewer where the text is shorter), then their max
            w = self.window
            sums = torch.nn.functional.pad((x * mask).cumsum(1), (0, 0, 1, 0))  # sums[:, i]: the first i words
            starts = torch.arange(max(x.shape[1] - w + 1, 1), device=x.device)
            ends = (starts + w).clamp(max=x.shape[1])
            size = torch.minimum(ends.unsqueeze(0), lengths.unsqueeze(1)) - starts.unsqueeze(0)  # words in each
            windows = (sums[:, ends] - sums[:, starts]) / size.clamp(min=1).unsqueeze(2).to(x.dtype)
            count = (lengths - w + 1).clamp(min=1)
            windows = windows.masked_fill(~(starts.unsqueeze(0) < count.unsqueeze(1)).unsqueeze(2), float("-inf"))
            second = windows.amax(1)
        second = torch.nan_to_num(second, neginf=0.0)  # an empty text
        return self.ffn(torch.cat([mean, second], dim=1))


BARE = {  # variants trained and scored as bare torch modules around the library's CBoW-FFN
    "bigram16": lambda base: BigramCBoW(base, BIGRAM_BUCKETS),
    "bigram16t": lambda base: BigramCBoW(base, BIGRAM_BUCKETS),
    "meanmax16": lambda base: PooledCBoW(base, "max"), "hier16": lambda base: PooledCBoW(base, "hier"),
}
ATTENTION = {"attn16", "attn20k", "attnmix16"}  # the library's attention CBoW (`Student("cbow-attn")`)


@torch.inference_mode()
def module_logits(module: torch.nn.Module, ids: list, batch_size: int = 512) -> np.ndarray:
    module.eval()
    out = []
    for start in range(0, len(ids), batch_size):
        tokens, lengths = pad_ids(ids[start:start + batch_size])
        out.append(module(torch.from_numpy(tokens), torch.from_numpy(lengths)).numpy())
    return np.concatenate(out)


def texts_per_s(student: Student, texts: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        model = runtime.load(student.save_pretrained(Path(tmp) / "s"))
        model.logits(texts[:256])
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            model.logits(texts)
            best = min(best, time.perf_counter() - started)
    return len(texts) / best


def with_pool(spec: str, pools: dict[str, Path], teacher: Teacher, cache: LogitCache, texts: list[str],
              logits: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The transfer set of a variant: `texts` plus the pool `spec` names ("glove" or "glove>0.9"), if any."""
    if not spec:
        return texts, logits
    name, _, floor = spec.partition(">")
    extra = [t for t in read_transfer(str(pools[name])) if t.strip()]
    extra_logits = teacher.logits(extra, cache=cache, progress=True)
    if floor:
        keep = softmax(extra_logits).max(1) >= float(floor)
        extra, extra_logits = [t for t, k in zip(extra, keep, strict=True) if k], extra_logits[keep]
    print(f"pool {spec}: {len(extra)} texts", file=sys.stderr)
    return texts + extra, np.concatenate([logits, extra_logits])


def one_run(folder: Path, variants: list[str], pools: dict[str, str], cap: int | None = None,
            dump: Path | None = None, schedule: dict | None = None) -> list[dict]:
    resolved = folder / "config.resolved.json"  # older run folders keep the config in results.json only
    config = json.loads(resolved.read_text()) if resolved.exists() else \
        json.loads((folder / "results.json").read_text())["config"]
    c = RunConfig(**{k: v for k, v in config.items() if k in RunConfig.__dataclass_fields__})
    task = load_task(c)
    teacher = get_teacher(c, task, folder / "teacher", progress=False)
    cache = LogitCache(logit_cache_path())
    teacher = choose_labeller(c, teacher, task, cache)[0]  # the run's own precision (int8 where its guard passed)
    transfer_logits = teacher.logits(task.transfer, cache=cache, progress=False)
    teacher_test = teacher.logits(task.test.texts, cache=cache, progress=False).argmax(1)
    gold, k = np.asarray(task.test.labels), len(task.labeled.label_names)
    held = set(calibration_split(task, transfer_logits, c.seed)[0])
    keep = [i for i, t in enumerate(task.transfer) if t not in held]
    if cap is not None and cap < len(keep):  # a small transfer set: a seeded sample of the run's own
        keep = sorted(np.random.default_rng(c.seed).choice(keep, cap, replace=False).tolist())
    texts, logits = [task.transfer[i] for i in keep], transfer_logits[keep]
    if dump is not None:
        dump.mkdir(parents=True, exist_ok=True)
        (dump / f"{folder.name}.txt").write_text("".join(t.replace("\n", " ") + "\n" for t in texts))
    paths = {name: Path(path.replace("{run}", folder.name)) for name, path in pools.items()}
    train = TrainConfig(**{"loss": c.loss, "seed": c.seed, **(schedule or {})})
    suffix = "".join(f";{key}={value}" for key, value in (schedule or {}).items())
    glove = word_vectors(c.glove)
    vocab = Vocabulary.build(texts, CBoWConfig().vocab_size, TokenizerConfig(max_length=CBoWConfig().max_length))
    mine = None
    if any(VARIANTS[v.partition("+")[0]][2] in ("teacher", "mix") for v in variants):
        started = time.perf_counter()
        mine = (vocab.words, teacher.word_vectors(vocab.words))
        print(f"{folder}: teacher word vectors for {len(vocab.words)} words in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
    teacher_row = {"variant": "teacher", **scores(gold, teacher_test, k)}
    rows = [{"run": folder.name, "data": c.data, **teacher_row, "headline": headline(task.metric, teacher_row)}]
    sample = np.random.default_rng(c.seed).permutation(len(texts))[:5000]
    for name in variants:
        base, _, pool = name.partition("+")
        dim, hidden, source = VARIANTS[base]
        vectors = {"teacher": mine, "mix": side_by_side(*mine, glove) if source == "mix" else None}.get(source, glove)
        fit_texts, fit_logits = with_pool(pool, paths, teacher, cache, texts, logits)
        started = time.perf_counter()
        if base == "model2vec":
            rows.append(peer_row(folder.name, c, name + suffix + (f"@{cap}" if cap else ""), task, fit_texts,
                                 fit_logits,
                                 teacher_test, [texts[i] for i in sample], logits[sample].argmax(1), started))
            continue
        if base == "bilstm":
            student = Student("bilstm", train=train, vectors=vectors)
        else:
            config = CBoWConfig(vocab_size=VOCABULARY.get(base, CBoWConfig.vocab_size), embed_dim=dim,
                                hidden_dim=hidden, n_classes=k)
            student = Student("cbow-attn" if base in ATTENTION else "cbow", config=config, train=train,
                              vectors=vectors)
        if base in BARE:  # not a library student (yet): trained and scored as a bare module
            student._build(np.asarray(task.labeled.label_names), fit_texts)  # the vocabulary and the GloVe start
            module = BARE[base](student.module_)
            fit_module(module, student.vocab_.encode_batch(fit_texts), fit_logits, train, progress=False)
            student.module_ = module
            pred = module_logits(module, student.vocab_.encode_batch(task.test.texts)).argmax(1)
        else:
            student.fit(fit_texts, fit_logits, task.labeled.label_names, progress=False)
            pred = student.logits(task.test.texts).argmax(1)
        row = {"run": folder.name, "data": c.data, "variant": name + suffix + (f"@{cap}" if cap else ""),
               **scores(gold, pred, k), "transfer": len(fit_texts),
               "agree_test": agreement(pred, teacher_test),
               "agree_transfer": agreement(student.logits([texts[i] for i in sample]).argmax(1),
                                           logits[sample].argmax(1)),
               "params": student.n_parameters()["total"], "train_s": round(time.perf_counter() - started, 1),
               "texts_per_s": None if base in BARE else round(texts_per_s(student, task.test.texts))}
        row["headline"] = headline(task.metric, row)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def peer_row(run: str, c: RunConfig, name: str, task: Task, fit_texts: list[str], fit_logits: np.ndarray,
             teacher_test: np.ndarray, seen: list[str], seen_teacher: np.ndarray, started: float) -> dict:
    """The model2vec peer (the packaged MiniLM's static vectors) fitted to the teacher's hard labels of the same
    transfer texts the students distil from, scored like them."""
    peer = Model2Vec(seed=c.seed)
    peer.fit(fit_texts, fit_logits.argmax(1).tolist())
    pred = peer.predict(task.test.texts)
    row = {"run": run, "data": c.data, "variant": name, **scores(np.asarray(task.test.labels), pred,
                                                                 len(task.labeled.label_names)),
           "transfer": len(fit_texts), "agree_test": agreement(pred, teacher_test),
           "agree_transfer": agreement(peer.predict(seen), seen_teacher), "params": peer.n_parameters,
           "train_s": round(time.perf_counter() - started, 1), "texts_per_s": None}
    row["headline"] = headline(task.metric, row)
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def pm(values: list[float], scale: float = 100.0) -> str:
    mean = scale * statistics.mean(values)
    return f"{mean:.1f}" + (f" ± {scale * statistics.stdev(values):.1f}" if len(values) > 1 else "")


def transfer_cell(rows: list[dict]) -> str:
    """The mean transfer set a variant trained on (rows measured before the count was kept show "-")."""
    counts = [r["transfer"] for r in rows if "transfer" in r]
    return f"{statistics.mean(counts):,.0f}" if counts else "-"


def data_of(row: dict) -> str:
    """The row's dataset (rows measured before it was kept: the paper dataset its run folder is named after)."""
    return row.get("data") or next((part for part in row["run"].split("-") if part in DATASETS), row["run"])


def table(rows: list[dict]) -> list[str]:
    """One line per dataset and variant: means ± std over the runs that trained it."""
    lines = ["| data | variant | runs | transfer texts | F1 | teacher | student - teacher | agree test | agree transfer"
             " | params |", "|---|---|---|---|---|---|---|---|---|---|"]
    teacher = {r["run"]: r["headline"] for r in rows if r["variant"] == "teacher"}
    for data in dict.fromkeys(data_of(r) for r in rows):
        variants = dict.fromkeys(r["variant"] for r in rows if r["variant"] != "teacher")
        for name in variants:
            mine = [r for r in rows if r["variant"] == name and data_of(r) == data]
            if not mine:
                continue
            lines.append(
                f"| {data} | {name} | {len(mine)} | {transfer_cell(mine)} | {pm([r['headline'] for r in mine])} | "
                f"{pm([teacher[r['run']] for r in mine])} | {pm([r['headline'] - teacher[r['run']] for r in mine])} | "
                f"{pm([r['agree_test'] for r in mine])} | {pm([r['agree_transfer'] for r in mine])} | "
                f"{mine[0]['params']:,} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="run folders of `tinydistill run`")
    parser.add_argument("--variants", default="paper,teacher16,bigram16",
                        help=f"comma list of {', '.join(VARIANTS)}, each optionally +POOL or +POOL>P "
                        "(default: %(default)s)")
    parser.add_argument("--rows", nargs="+", type=Path, default=[],
                        help="tabulate the rows of earlier --out JSON files too (nothing is trained for them)")
    parser.add_argument("--pool", action="append", default=[], metavar="NAME=DIR",
                        help="extra unlabelled text that variants NAME+... add: an augmentation pool "
                        "(`tinydistill augment`) or a file, as `run --transfer` takes them (repeatable)")
    parser.add_argument("--out", type=Path, help="write OUT.json and OUT.md")
    parser.add_argument("--transfer-cap", type=int, help="train on a seeded sample of this many of each run's "
                        "transfer texts (before any pool)")
    parser.add_argument("--train", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a field of the students' TrainConfig, e.g. patience=40 (repeatable; the rows' "
                        "names say so)")
    parser.add_argument("--dump-transfer", type=Path, metavar="DIR",
                        help="write each run's (capped) transfer texts to DIR/RUN.txt, one a line, for `augment`")
    args = parser.parse_args()
    pools = {name: folder for name, _, folder in (p.partition("=") for p in args.pool)}
    variants = [v for v in args.variants.split(",") if v]
    rows = [row for path in args.rows for row in json.loads(path.read_text())]
    schedule = {key: type(getattr(TrainConfig(), key))(value)
                for key, _, value in (t.partition("=") for t in args.train)}
    rows += [row for folder in args.runs
             for row in one_run(folder, variants, pools, args.transfer_cap, args.dump_transfer, schedule)]
    rows = list({(r["run"], r["variant"]): r for r in rows}.values())  # a run and variant measured twice: the last
    lines = table(rows)
    print("\n".join(lines))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2))
        args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
