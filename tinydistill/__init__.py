"""tinydistill: distil a BERT-class teacher fine-tuned on a few labels into a tiny, fast student.

The names below load lazily, so `import tinydistill.runtime` stays free of torch.
"""

__version__ = "0.1.0"

_API = {
    "Split": "data", "load": "data", "load_file": "data", "load_paper_dataset": "data", "load_hub": "data",
    "stratified_sample": "data", "Teacher": "teacher", "Recipe": "finetune", "RECIPES": "finetune",
    "train_teacher": "finetune", "LogitCache": "logitcache", "Student": "students", "TrainConfig": "distill",
    "RunConfig": "config", "run": "pipeline", "scores": "evaluate", "TinyDistillError": "errors",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f"tinydistill.{_API[name]}"), name)
    raise AttributeError(f"module 'tinydistill' has no attribute {name!r}")
