"""Past one machine: labelling and augmentation on a Ray cluster (the ``scale`` extra; the core never imports this).

Ray Data hands the planned shards (``tinydistill.sources.plan_shards``: file, row range, byte offset) to a pool
of actors (``map_batches`` with a callable class): each actor loads the teacher once, then for each shard
reads its rows from the input (any ``pyarrow.fs`` path), labels them with ``Teacher.logits`` exactly as the
local engine does, and writes the Parquet shard itself. Only the small manifest entries come back to the
driver, so its memory does not grow with the transfer set. Augmentation draws each sentence's variants in the
actors and keeps the pool's order and duplicate check on the driver, so a pool equals the local engine's.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from tinydistill.errors import TinyDistillError

log = logging.getLogger(__name__)

INSTALL = "--engine ray needs Ray: pip install 'tinydistill[scale]'"


def require_ray() -> Any:
    """The `ray` module, or the one-line error saying which extra installs it."""
    try:
        import ray
        import ray.data  # noqa: F401 (the extra installs both)
    except ImportError:
        raise TinyDistillError(INSTALL) from None
    return ray


def connect(address: str | None = None) -> Any:
    """Join the cluster at ``address`` (``auto``: the one ``ray start`` runs here; ``ray://host:10001``), or
    start a local Ray when none is given; a Ray already started in this process is used as it is."""
    ray = require_ray()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False  # ours counts shards
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-dataset INFO lines drown the progress bar
    return ray


def _rows(dataset: Any) -> Iterator[dict]:
    """The rows of a Ray dataset; once all are read, or the reader stops early (a pool that is full), Ray Data's
    helper threads are finished (`settle`). An error leaves its read as it is: the process ends with it anyway."""
    try:
        yield from dataset.iter_rows()
    except GeneratorExit:  # closed half way
        pass
    settle()


def settle(timeout: float = 10.0) -> None:
    """Stop Ray Data's block-prefetcher threads and join them and its executor threads, while Ray is still up.

    A read that stops half way leaves its prefetcher's thread parked for good, holding object references
    (the thread's target holds the prefetcher, so collecting it never stops it); with such a thread left, Ray
    ended the driver with status 1 at its exit although the work had succeeded. Call only between reads."""
    gc.collect()
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name == "Prefetcher":
            stop = getattr(getattr(getattr(thread, "_target", None), "__self__", None), "stop", None)
            if callable(stop):
                stop()
        elif not thread.name.startswith("StreamingExecutor-"):
            continue
        thread.join(max(deadline - time.monotonic(), 0.0))


def _on_gpu(model: Any) -> Any:
    """``model`` on this actor's GPU behind CPU tensors in and out, so ``Teacher.logits`` runs unchanged."""
    import torch

    class OnDevice(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner.to("cuda")

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.inner(input_ids.to("cuda"), attention_mask.to("cuda")).float().cpu()

    return OnDevice(model).eval()


class _Labeller:
    """One Ray actor: the teacher, loaded once, labels whole shards and writes them."""

    def __init__(self, teacher_dir: str, out: str, plan: str, batch_size: int, threads: int, gpus: float = 0.0):
        import torch

        from tinydistill.teacher import Teacher

        torch.set_num_threads(threads)  # the actor's CPUs, not all of the node's
        self.teacher = Teacher.from_pretrained(teacher_dir)
        if gpus > 0:  # Ray set CUDA_VISIBLE_DEVICES to this actor's GPU; fp32, so logits stay close to the CPU's
            if not torch.cuda.is_available():
                raise TinyDistillError("--gpus-per-worker: Ray gave this worker a GPU but torch sees none "
                                       "(install a CUDA build of torch on the workers)")
            self.teacher.model = _on_gpu(self.teacher.model)
        self.out, self.plan, self.batch_size = out, plan, batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from tinydistill.shards import label_shard

        entries = []
        for index, spec in zip(batch["index"], batch["spec"]):
            entry = label_shard(self.teacher, json.loads(spec), self.out, int(index), self.plan, self.batch_size)
            entries.append(json.dumps(entry))
        return {"index": np.asarray(batch["index"]), "entry": np.asarray(entries)}


def ray_engine(address: str | None = None, workers: int = 1, threads_per_worker: int = 1,
               gpus_per_worker: float = 0.0):
    """An ``engine`` for ``shards.label_to_shards`` that labels on a pool of ``workers`` Ray actors."""
    if workers < 1 or threads_per_worker < 1 or gpus_per_worker < 0:
        raise TinyDistillError(f"--workers and --threads-per-worker must be >= 1 and --gpus-per-worker >= 0, got "
                               f"{workers}, {threads_per_worker}, {gpus_per_worker}")
    require_ray()

    def engine(todo: Sequence[tuple[int, dict]], teacher_dir: str, out: str, plan: str,
               batch_size: int) -> Iterator[tuple[int, dict]]:
        if not todo:
            return
        ray = connect(address)
        items = [{"index": index, "spec": json.dumps(spec)} for index, spec in todo]
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            # one shard in flight per actor: the next goes to whichever is free, so none idles at the end
            _Labeller, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1),
            fn_constructor_kwargs={"teacher_dir": teacher_dir, "out": out, "plan": plan,
                                   "batch_size": batch_size, "threads": threads_per_worker,
                                   "gpus": gpus_per_worker},
            num_cpus=threads_per_worker, num_gpus=gpus_per_worker or None)
        with _user_errors():
            for row in _rows(dataset):
                yield int(row["index"]), json.loads(row["entry"])

    return engine


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """A worker's ``TinyDistillError`` (a bad row in a shard) as the same one-line error on the driver.

    Ray wraps it in its own exception whose text ends with the original traceback's last line."""
    try:
        yield
    except TinyDistillError:
        raise
    except Exception as exc:
        marker = "tinydistill.errors.TinyDistillError: "
        lines = [line for line in str(exc).splitlines() if line.startswith(marker)]
        if lines:
            raise TinyDistillError(lines[-1][len(marker):]) from None
        raise


# ---------------------------------------------------------------------------------------------- augment


class _Drawer:
    """One Ray actor: the variant maker (candidates built once on the driver, shipped once) draws variants."""

    def __init__(self, maker: Any, seed: int, n: int):
        self.maker, self.seed, self.n = maker, seed, n

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        found = []
        for r, i in zip(batch["round"], batch["sentence"]):
            # the same seed triple as pools._stream, so each sentence's draw is the local engine's
            found.append(json.dumps(self.maker.variants(int(i), np.random.default_rng([self.seed, int(r), int(i)]),
                                                        self.n)))
        return {"sentence": np.asarray(batch["sentence"]), "found": np.asarray(found)}


def ray_rounds(maker: Any, count: int, n: int, seed: int, address: str | None = None, workers: int = 1,
               chunk: int = 256):
    """A ``draw(r, i0)`` for ``pools.write_pool``: sentence ``i``'s variants of round ``r``, for ``i >= i0`` in
    order, drawn by ``workers`` actors in chunks of ``chunk`` sentences."""
    require_ray()

    def draw(r: int, i0: int) -> Iterator[tuple[int, list[str]]]:
        ray = connect(address)
        ray.data.DataContext.get_current().execution_options.preserve_order = True  # the pool's order
        items = [{"round": r, "sentence": i} for i in range(i0, count)]
        if not items:
            return
        dataset = ray.data.from_items(items, override_num_blocks=max(len(items) // chunk, 1)).map_batches(
            _Drawer, batch_size=chunk, compute=ray.data.ActorPoolStrategy(size=workers),
            fn_constructor_kwargs={"maker": maker, "seed": seed, "n": n}, num_cpus=1)
        with _user_errors():
            for row in _rows(dataset):
                yield int(row["sentence"]), json.loads(row["found"])

    return draw
