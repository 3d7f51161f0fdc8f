"""Where int8 costs a fine-tuned teacher its accuracy: the int8 guard's labelled texts, scored in fp32, in int8 with
every `nn.Linear` quantized (what `--label-precision int8` does), with groups of layers left in fp32, and with the
texts int8 is unsure of labelled again in fp32 (a hybrid), each with its texts/s on one thread.

    TINYDISTILL_DATA=../shared/data python benchmarks/bench_int8_layers.py runs/table2-mpnet/sst2-200-s1-mpnet-base

The texts are those `pipeline.choose_labeller` compares on (up to 500 of the data's labels beyond the run's
`--labeled`, never the test split). A hybrid's cost is the int8 pass plus the fp32 pass over the texts it redoes.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinydistill import data as data_mod
from tinydistill.config import RunConfig
from tinydistill.device import INT8_SAMPLE
from tinydistill.pipeline import get_teacher
from tinydistill.runtime import softmax
from tinydistill.task import load_task
from tinydistill.teacher import Teacher

GROUPS = {"every layer": (), "all but the head": ("head", "pooler"), "all but attention": ("attention",),
          "all but the FFN input": ("intermediate",), "all but the FFN output": ("output.dense",)}


def quantized(model: nn.Module, skip: tuple[str, ...]) -> nn.Module:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and not any(s in n for s in skip)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(model).eval(), dict.fromkeys(names, per_channel_dynamic_qconfig),
                                dtype=torch.qint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run folder of `tinydistill run` whose data has spare labels")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = json.loads((args.run / "config.resolved.json").read_text())
    c = RunConfig(**{k: v for k, v in config.items() if k in RunConfig.__dataclass_fields__})
    task = load_task(c)
    if task.spare is None or task.spare.labels is None:
        raise SystemExit(f"{args.run}: its data has no labels beyond --labeled to compare on")
    teacher = get_teacher(c, task, args.run / "teacher", progress=False)
    spare = data_mod.stratified_sample(task.spare, min(INT8_SAMPLE, len(task.spare)), c.seed)[0]
    gold = np.asarray(spare.labels)
    rows, logits = [], {}

    def score(name: str, model: nn.Module) -> None:
        labeller = Teacher(model, teacher.tokenizer, teacher.classes_, teacher.max_length, teacher.info)
        started = time.perf_counter()
        logits[name] = labeller.logits(spare.texts, progress=False)
        rate = len(gold) / (time.perf_counter() - started)
        rows.append({"labeller": name, "accuracy": float((logits[name].argmax(1) == gold).mean()), "texts_per_s": rate})
        print(f"{name:32s} accuracy {100 * rows[-1]['accuracy']:.1f}  {rate:.1f} texts/s", flush=True)

    score("fp32", teacher.model)
    for name, skip in GROUPS.items():
        score(f"int8, {name}", quantized(teacher.model, skip))
    fp32, int8 = logits["fp32"], logits["int8, every layer"]
    unsure = softmax(int8).max(1)
    for floor in (0.8, 0.9, 0.95, 0.99):
        redo = unsure < floor
        mixed = np.where(redo[:, None], fp32, int8)
        rows.append({"labeller": f"hybrid, fp32 below p={floor}", "redone": float(redo.mean()),
                     "accuracy": float((mixed.argmax(1) == gold).mean())})
        print(f"hybrid, fp32 below p={floor:<5} accuracy {100 * rows[-1]['accuracy']:.1f}  "
              f"{100 * redo.mean():.1f}% of texts labelled twice", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"run": str(args.run), "texts": len(gold), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
