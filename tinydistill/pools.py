"""Augmentation pools on disk: ``tinydistill.augment``'s variants streamed to gzip shards plus a ``manifest.json``.

Each finished shard is written atomically (a kill leaves the old file or the new one) and recorded in the
manifest with the cursor after its last line, so a killed run resumes after its last finished shard and gives
the same pool as an uninterrupted one. ``tinydistill augment`` writes a pool; ``tinydistill run --transfer
POOL`` reads one.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from tinydistill.augment import Tagger, TangOps, glove_neighbours, load_mlm, variant_maker
from tinydistill.config import AUGMENT_METHODS
from tinydistill.data import load_paper_dataset
from tinydistill.errors import TinyDistillError
from tinydistill.folders import write_atomic

log = logging.getLogger(__name__)


def _digest(text: str, size: int = 16) -> str:
    return hashlib.blake2b(text.encode(), digest_size=size).hexdigest()


def _key(text: str) -> bytes:
    # 8-byte digests keep a million-line pool's duplicate check at ~50 MB; collisions are ~1e-7 likely
    return hashlib.blake2b(text.encode(), digest_size=8).digest()


def _stream(maker, count: int, n: int, seed: int, start: tuple[int, int, int], seen: set[bytes], draw=None):
    """Yield ``(variant, cursor)`` over rounds of all sentences, each variant new to ``seen``.

    Round ``r`` draws sentence ``i``'s variants from the seed ``(seed, r, i)``, so the stream can restart at a
    cursor ``(r, i, j)``: the ``j``-th variant of that draw. It ends after a round that added nothing.
    ``draw(r, i0)`` yields ``(i, variants)`` for ``i`` from ``i0`` in order (default: drawn here, one by one;
    ``tinydistill.scale.ray_rounds`` draws them on Ray actors with the same seeds).
    """
    if draw is None:
        def draw(r: int, i0: int):
            return ((i, maker.variants(i, np.random.default_rng([seed, r, i]), n)) for i in range(i0, count))
    r, i0, j0 = start
    added = start != (0, 0, 0)  # a resumed round had added something before the kill, or it would have ended
    while True:
        for i, found in draw(r, i0):
            for j in range(j0, len(found)):
                key = _key(found[j])
                if key not in seen:
                    seen.add(key)
                    added = True
                    yield found[j], (r, i, j + 1)
            j0 = 0
        if not added:
            return
        r, i0, added = r + 1, 0, False


def _read_shard(path: Path) -> list[str]:
    """The lines of one gzip shard; a missing, truncated or non-gzip shard is a one-line error naming it."""
    try:
        return gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")[:-1]
    except FileNotFoundError:
        raise TinyDistillError(f"{path}: shard missing (listed in manifest.json)") from None
    except (OSError, EOFError, UnicodeDecodeError, ValueError) as exc:
        raise TinyDistillError(f"{path}: not a readable gzip shard of UTF-8 text ({exc})") from None


def _shard_path(out: Path, shard: object) -> Path:
    """The file a manifest entry names, which must be a plain file name inside the pool folder."""
    name = shard.get("file") if isinstance(shard, dict) else None
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise TinyDistillError(f"{out / 'manifest.json'}: shard entry {shard!r} must name a file inside the pool")
    return out / name


def _read_manifest(out: Path) -> dict:
    path = out / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise TinyDistillError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("shards"), list) \
            or not isinstance(manifest.get("settings"), dict):
        raise TinyDistillError(f"{path}: not a tinydistill pool manifest (expected 'settings' and 'shards')")
    for shard in manifest["shards"]:
        _shard_path(out, shard)
    return manifest


def _resumed_manifest(out: Path, settings: dict) -> dict[str, Any]:
    """The manifest of the pool at `out` to resume (a new one when there is none); other settings are refused."""
    if not (out / "manifest.json").exists():
        return {"format": "tinydistill-pool", "version": 1, "settings": settings, "shards": [], "complete": False}
    old = _read_manifest(out)
    changed = sorted(key for key in settings if old["settings"].get(key) != settings[key])
    if changed:
        raise TinyDistillError(f"{out} holds a pool made with other settings ({', '.join(changed)} "
                               "differ); use a new output folder or the same settings")
    return old


def write_pool(sentences: Sequence[str], out_dir: str | os.PathLike, size: int, method: str = "glove",
               n: int = 20, p: float = 0.4, k: int = 15, seed: int = 0, shard_size: int = 100_000, *,
               neighbours: dict[str, list[str]] | None = None, mlm=None, tagger: Tagger | None = None,
               tang: TangOps = TangOps(), progress: bool = True,  # noqa: B008 (TangOps is frozen)
               engine=None) -> Path:
    """Write ``size`` distinct variants of ``sentences`` to ``out_dir`` in gzip shards; return ``out_dir``.

    Rounds of ``iter_augmented`` (round r uses seed (seed, r)) run until ``size`` is reached or a round adds
    nothing new (then a warning and a smaller pool). Each finished shard is written atomically and recorded
    in ``manifest.json`` with the cursor after its last line; calling again with the same arguments resumes
    there, and with different ones is refused. Arguments as in ``iter_augmented``. ``engine(maker, count, n,
    seed)``, if given, returns the ``draw`` of ``_stream`` (``tinydistill.scale.ray_rounds``): the same pool.
    """
    if size <= 0 or shard_size <= 0:
        raise TinyDistillError(f"pool size and shard size must be positive, got {size} and {shard_size}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise TinyDistillError(f"{out}: a file; the pool needs a folder")
    maker = variant_maker(sentences, method, p, k, neighbours, mlm, tagger, tang, progress)
    settings = {"method": method, "n": n, "p": p, "k": k, "seed": seed, "size": size,
                "shard_size": shard_size, "tang": asdict(tang), "sentences": _digest("\n".join(sentences)),
                # the candidates too, so that another GloVe, MLM or tagger is not mixed into one pool
                "candidates": _digest(json.dumps(maker.state()))}
    manifest_path = out / "manifest.json"
    manifest = _resumed_manifest(out, settings)
    shards: list[dict[str, Any]] = manifest["shards"]
    done = sum(shard["lines"] for shard in shards)
    if manifest["complete"]:
        return out
    out.mkdir(parents=True, exist_ok=True)
    seen = {_key(line) for shard in shards for line in _read_shard(_shard_path(out, shard))}
    start = cursor = tuple(shards[-1]["cursor"]) if shards else (0, 0, 0)  # after the last finished shard
    buffer: list[str] = []

    def flush(cursor: tuple[int, int, int]) -> None:
        name = f"shard-{len(shards):05d}.txt.gz"
        write_atomic(out / name, gzip.compress("".join(line + "\n" for line in buffer).encode(), 6, mtime=0),
                     single_writer=True)  # one writer per pool: a resume overwrites a killed write's leftover
        shards.append({"file": name, "lines": len(buffer), "cursor": list(cursor)})
        write_atomic(manifest_path, json.dumps(manifest, indent=1).encode(), single_writer=True)
        buffer.clear()

    with tqdm(total=size, initial=done, unit="sent", desc=f"augment {method}", disable=not progress) as bar:
        draw = engine(maker, len(sentences), n, seed) if engine else None
        for line, cursor in _stream(maker, len(sentences), n, seed, start, seen, draw):
            buffer.append(line)
            bar.update()
            if len(buffer) == shard_size or done + len(buffer) == size:
                done += len(buffer)
                flush(cursor)
                if done == size:
                    break
        if buffer:
            done += len(buffer)
            flush(cursor)
    if done < size:
        log.warning("only %d distinct variants exist (asked for %d); raise n, k or p", done, size)
    manifest["complete"] = True
    write_atomic(manifest_path, json.dumps(manifest, indent=1).encode(), single_writer=True)
    return out


def read_pool(out_dir: str | os.PathLike) -> list[str]:
    """The sentences of a finished pool written by ``write_pool``, in order."""
    out = Path(out_dir)
    if not (out / "manifest.json").exists():
        raise TinyDistillError(f"{out}: not an augmentation pool (no manifest.json)")
    manifest = _read_manifest(out)
    if not manifest.get("complete"):
        raise TinyDistillError(f"{out}: the pool is unfinished; run the same augment command again to end it")
    return [line for shard in manifest["shards"] for line in _read_shard(_shard_path(out, shard))]


def grow(texts: Sequence[str], root: Path, method: str, size: int, seed: int, progress: bool = True) -> list[str]:
    """``size`` variants of ``texts`` by ``method``: a pool under ``root`` named after what it is made of, so that
    a rerun reuses it (and resumes it after a kill) and other texts or settings make another."""
    key = _digest("\n".join([method, str(size), str(seed), *texts]), 8)
    return read_pool(write_pool(texts, root / f"{method}-{key}", size, method, seed=seed, progress=progress))


def augment_command(data: str, split: str, size: int, out: str, method: str = "glove", n: int = 20,
                    p: float = 0.4, k: int = 15, seed: int = 0, data_dir: str | None = None,
                    mlm: str | None = None, engine: str = "local", address: str | None = None,
                    workers: int = 1, device: str | None = None) -> Path:
    """``tinydistill augment``: load sentences and candidate sources by name, then ``write_pool``.

    ``data``: a paper dataset name (with ``split``) or a plain text file, one sentence a line.
    ``mlm``: a masked LM's hub name or folder, for ``method="mlm"``, run on ``device`` (``auto``, ``cpu``, ``cuda``...).
    ``engine``: ``local`` (this process) or ``ray`` (``workers`` actors on the Ray at ``address``; same pool).
    """
    if method not in AUGMENT_METHODS:
        raise TinyDistillError(f"unknown augmentation method {method!r}; expected one of {list(AUGMENT_METHODS)}")
    draw = None
    if engine == "ray":
        from tinydistill.scale import ray_rounds, require_ray  # the scale extra: the core never imports it

        require_ray()  # before the candidates are built: a missing extra fails in a second
        def draw(maker, count, n, seed):
            return ray_rounds(maker, count, n, seed, address=address, workers=workers)
    elif engine != "local":
        raise TinyDistillError(f"unknown --engine {engine!r}; expected 'local' or 'ray'")
    if Path(data).is_file():
        lines = Path(data).read_text(encoding="utf-8").splitlines()
        sentences = [line.strip() for line in lines if line.strip()]
    else:
        sentences = load_paper_dataset(data, split, data_dir=data_dir).texts
    if not sentences:
        raise TinyDistillError(f"no sentences in {data} ({split})")
    neighbours, model = None, None
    if method == "mlm":
        if not mlm:
            raise TinyDistillError("method 'mlm' needs a masked LM (--mlm NAME, e.g. bert-base-uncased)")
        model = load_mlm(mlm, device)
        try:
            neighbours = glove_neighbours(sentences, k)
        except TinyDistillError as exc:
            log.warning("%s; words the masked LM cannot score stay as they are", exc)
    return write_pool(sentences, out, size, method, n, p, k, seed, neighbours=neighbours, mlm=model, engine=draw)
