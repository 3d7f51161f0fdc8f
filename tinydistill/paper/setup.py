"""What the paper's experiments share, torch-free (the CLI builds `reproduce`'s options from it): the datasets and
sizes of its tables, `Setup` (each field an option of `tinydistill reproduce`) and the display names."""

from __future__ import annotations

from dataclasses import dataclass, field

from tinydistill import data as data_mod
from tinydistill.cards import NAMES as STUDENT_NAMES
from tinydistill.config import RunConfig
from tinydistill.errors import TinyDistillError

DATASETS = ("agnews", "emotion", "imdb", "sst2", "cola")  # Table 2's column order
TABLE3_SIZES = (200, 6920)  # SST-2 labels, low and high resource (the paper's Table 3)
CURVE_DATASETS, CURVE_SIZES = ("sst2", "agnews"), (50, 100, 200, 500, 1000)  # `reproduce curves`

# display names of the models and datasets, in tables and plots
NAMES = {**STUDENT_NAMES, "fasttext": "fastText", "setfit": "SetFit (MiniLM)", "tfidf-lr": "TF-IDF + LR"}
TITLES = {"agnews": "AGNews", "emotion": "Emotion", "imdb": "IMDB", "sst2": "SST-2", "cola": "CoLA"}


@dataclass
class Setup:
    """What the three reproductions share; each field is an option of `tinydistill reproduce`."""

    seeds: tuple[int, ...] = (0, 1, 2)  # the paper reports one run; we report mean ± std over these
    seeds_by: dict[str, tuple[int, ...]] = field(default_factory=dict)  # per-dataset seeds that override `seeds`
    teacher: str = "minilm"  # "mpnet-base" (109.5M, after `tinydistill fetch-teacher`) where the CPU time allows
    teachers: dict[str, str] = field(default_factory=dict)  # per-dataset choices that override `teacher`
    transfer_scale: float | None = None  # fraction of the paper's S-train to use when all of it takes too long
    transfer_max: int | None = None  # at most this many transfer texts a dataset (after the scale), same reason
    test_size: int | None = None  # score on one stratified sample of each test split (IMDB's has 25,000 texts)
    augment: str = "glove"  # how SST-2/CoLA pools grow: TinyBERT word replacement from GloVe, or "tang"
    out: str = "runs/reproduce"
    data_dir: str | None = None  # folder laid out like shared/data; else $TINYDISTILL_DATA, else the hub
    peers: tuple[str, ...] = ("fasttext", "model2vec", "setfit")  # each but SetFit also on the teacher's labels
    students: tuple[str, ...] = ("cbow", "bilstm")
    speed_teacher: str | None = None  # a 109.5M encoder timed beside runs with a smaller teacher ("mpnet-base")
    base: RunConfig | None = None  # other pipeline settings (recipe, epochs, GloVe, speed); None: the defaults
    progress: bool = True

    def teacher_for(self, dataset: str) -> str:
        return self.teachers.get(dataset, self.teacher)

    def seeds_for(self, dataset: str) -> tuple[int, ...]:
        return self.seeds_by.get(dataset, self.seeds)

    def transfer_size(self, dataset: str) -> int:
        """The S-train size used: the paper's, times the scale, capped at `transfer_max`."""
        size = max(1, round(dataset_spec(dataset).transfer * (self.transfer_scale or 1.0)))
        return min(size, self.transfer_max) if self.transfer_max else size


def model_name(model: str) -> str:
    """A model's name in tables and plots: CBoW-FFN NoDs, fastText on teacher labels."""
    for suffix, words in (("-nods", " NoDs"), ("-hard", " on teacher labels")):
        if model.endswith(suffix):
            return model_name(model.removesuffix(suffix)) + words
    return NAMES.get(model, model)


def dataset_spec(dataset: str) -> data_mod.PaperDataset:
    """A paper dataset's sizes and metric (its Table 1 row); an unknown name is a one-line error."""
    if dataset not in data_mod.PAPER_DATASETS:
        raise TinyDistillError(f"unknown dataset {dataset!r}; expected some of {list(data_mod.PAPER_DATASETS)}")
    return data_mod.PAPER_DATASETS[dataset]
