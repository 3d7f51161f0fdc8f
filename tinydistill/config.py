"""`RunConfig`: the settings of one `tinydistill run`, one commented field per knob.

Torch-free, so that the CLI builds the `run` options from it (`tinydistill.cli.pipeline`) without importing torch;
`pipeline.run(RunConfig(...))` runs it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tinydistill import data as data_mod
from tinydistill.bases import default_teacher
from tinydistill.errors import TinyDistillError, check_number

STUDENTS = ("cbow", "cbow-attn", "bilstm", "cnn")  # the student architectures (students.ARCHITECTURES)
LOSSES = ("mse", "kl")  # distillation losses (distill.TrainConfig.loss)
AUGMENT_METHODS = ("glove", "mlm", "tang")  # transfer-set augmentation (augment.variant_maker)
GROW_METHODS = ("glove", "tang")  # those that need no masked LM: what `run` may grow a small transfer set with
TEACHER_VECTOR_STUDENTS = ("cbow", "cbow-attn")  # whose embedding `teacher_vectors` starts from the teacher (measured)


@dataclass
class RunConfig:
    data: str = "sst2"  # a paper dataset name, a file (csv/tsv/jsonl/parquet) or a hub dataset id
    data_dir: str | None = None  # folder laid out like shared/data; else $TINYDISTILL_DATA, else the hub
    test: str | None = None  # a test file, or a split name; default: the paper's test split / 20% held out
    text_column: str = "text"
    label_column: str = "label"
    labeled: int | None = None  # T-train size; default the paper's (Table 1), or all labels of a user file
    transfer: list[str] = field(default_factory=list)  # extra unlabelled text: pool folders or files
    transfer_size: int | None = None  # cap on the transfer set (a seeded sample), for a quick run
    # with a transfer set of fewer than `grow_below` texts the CBoW-FFN and BiLSTM train on `grow_size` augmentation
    # variants of them, labelled by the teacher ("glove" needs GloVe and `glove`; "tang"; "none": never); see
    # results/students-small.md
    grow: str = "glove"
    grow_below: int = 5_000
    grow_size: int = 20_000
    test_size: int | None = None  # cap on the test split (one stratified sample, the same for every seed)
    # short name, local folder or hub id; $TINYDISTILL_TEACHER sets the default (the README's tests use a tiny one)
    teacher: str = field(default_factory=default_teacher)
    recipe: str = "strong"  # teacher recipe, a name in finetune.RECIPES: "strong" (the default), "contrastive", ...
    teacher_epochs: float | None = None
    teacher_lr: float | None = None
    max_length: int | None = None  # teacher tokens per text
    # the paper's CBoW-FFN beside the attention CBoW (better on Emotion, IMDB and SST-2 with mpnet-base, tied on AG
    # News and SST-2 with MiniLM: results/students.md)
    students: list[str] = field(default_factory=lambda: ["cbow", "cbow-attn", "bilstm"])
    nods: bool = True  # also train each student on the labels alone (the paper's NoDs baseline)
    loss: str = "mse"
    glove: bool = True  # start student embeddings from GloVe 6B 50d (PCA to 16d, projected to 100d) if installed
    # start the CBoW students' embeddings from the fine-tuned teacher's own word vectors beside GloVe's (the CBoW-FFN
    # on Emotion/1000: +2.9 macro-F1 over three seeds; SST-2 and AG News within 0.3, results/students.md)
    teacher_vectors: bool = False
    seed: int = 0
    out: str = "runs/{data}-{labeled}-s{seed}"
    speed: bool = True  # measure throughput and latency
    device: str = "auto"  # where the teacher trains and labels: auto (a GPU when torch sees one), cpu, cuda, cuda:N
    label_precision: str = "fp32"  # "int8": CPU labelling in dynamic int8, when it scores within 0.5 of fp32
    student_device: str = "cpu"  # where students train ("auto"/"cuda" for a BiLSTM on a large transfer set)

    def __post_init__(self) -> None:
        # sizes are sizes: 0 is an error, never "not given" (that is None)
        for name in ("labeled", "transfer_size", "test_size"):
            check_number(name, getattr(self, name), "int", minimum=1, optional=True)
        check_number("teacher_epochs", self.teacher_epochs, above=0, optional=True)
        check_number("teacher_lr", self.teacher_lr, above=0, optional=True)
        check_number("max_length", self.max_length, "int", minimum=2, optional=True)
        check_number("seed", self.seed, "int", minimum=0)
        check_number("grow_below", self.grow_below, "int", minimum=0)
        check_number("grow_size", self.grow_size, "int", minimum=1)
        if self.grow not in (*GROW_METHODS, "none"):
            raise TinyDistillError(f"grow {self.grow!r}: expected one of {', '.join(GROW_METHODS)} or 'none'")
        if not self.students:
            raise TinyDistillError(f"students: expected at least one of {', '.join(STUDENTS)}")
        if self.loss not in ("mse", "kl"):
            raise TinyDistillError(f"loss {self.loss!r}: expected 'mse' or 'kl'")

    def run_dir(self) -> Path:
        name = Path(self.data).stem if os.sep in self.data or "." in self.data else self.data.replace("/", "_")
        labeled: int | str | None = self.labeled
        if labeled is None:  # the paper's size for its datasets; every label of a user's file
            spec = data_mod.PAPER_DATASETS.get(self.data)
            labeled = spec.labeled if spec else "all"
        return Path(self.out.format(data=name, labeled=labeled, seed=self.seed))
