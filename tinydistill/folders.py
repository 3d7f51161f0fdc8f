"""The folders and files tinydistill writes, and the rules that keep everything else safe.

- `write_atomic(path, data)`: a file is written under a temporary name beside it and renamed, so a reader (or a
  kill) sees the old file or the new one, never half of one.
- `staging(folder)` + `replace_folder(tmp, folder)`: a folder is built under a fresh hidden name beside its
  target and swapped in; two writers of one folder never share a temporary folder.
- Temporary names carry the writer's process id; the next write beside the same name removes what a killed
  writer left (`sweep_leftovers`).
- `folder_kind(path)`: which tinydistill folder a path is, by its marker file (student: config.json with
  format tinydistill-student; teacher: teacher.json; run: run.json or results.json; pool: manifest.json).
- `check_out(out, kind, overwrite, source)`: the overwrite policy. An output folder that exists, is not empty and
  is not a folder of the same kind is refused unless `overwrite`; an output is never its own source, nor a folder
  above or inside it. Checked before any work, so a refusal costs nothing.
- `sha256_file`, `check_hashes`: the weight hashes that saved folders record and loading checks.
- `cache_root()`, `logit_cache_path()`: the cache of teacher logits, fine-tuned teachers and assembled models.
- `is_run_folder(path)`: a run folder (or an export source holding `students/`).
- `write_transfer_file`, `read_transfer_labels`: the JSON Lines transfer file of `label` and its `.labels.json`.

Torch-free (the runtime imports it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from tinydistill.errors import TinyDistillError

log = logging.getLogger(__name__)

LOGITS = "logits.sqlite"  # the teacher-logit cache (logitcache.LogitCache), under cache_root()

STUDENT_FORMAT = "tinydistill-student"
RUN_MARKER = "run.json"  # written by `pipeline.run` when it starts a run folder
KINDS = ("student", "teacher", "run", "pool", "exports")
_NAMES = {"student": "a student folder", "teacher": "a teacher folder", "run": "a run folder",
          "pool": "an augmentation pool", "exports": "a folder of exported students"}


# ------------------------------------------------------------------------------------------------ cache


def cache_root() -> Path:
    """$TINYDISTILL_CACHE, else ~/.cache/tinydistill: teacher logits, fine-tuned teachers, assembled models."""
    return Path(os.environ.get("TINYDISTILL_CACHE", Path.home() / ".cache" / "tinydistill")).expanduser()


def logit_cache_path() -> Path:
    """The SQLite file of cached teacher logits (keyed by teacher fingerprint and text), shared by every run."""
    return cache_root() / LOGITS


# ------------------------------------------------------------------------------------------------ writing


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def temp_prefix(name: str, pid: int | None = None) -> str:
    """The start of a temporary name beside `name`: `.NAME.<pid>-<host>.`, the writer's process id and a tag of
    its machine, so that what a killed writer left behind can be told from what a live one (on this machine or,
    on a shared file system, on another) is writing."""
    return f".{name}.{os.getpid() if pid is None else pid}-{_host()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # another user's process, or no way to ask: keep its files
        return True
    return True


def sweep_leftovers(parent: Path, name: str) -> None:
    """Remove the temporary files and folders beside `name` that a writer killed mid-write left behind
    (`.NAME.<pid>-<host>.*.tmp` / `.old` of a process of this machine that is gone)."""
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    start = f".{name}."
    for entry in entries:
        if not (entry.name.startswith(start) and entry.name.endswith((".tmp", ".old"))):
            continue
        pid, _, host = entry.name[len(start):].split(".", 1)[0].partition("-")
        if host == _host() and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            log.info("removing %s, left behind by a writer that was killed", Path(entry.path))
            _remove(Path(entry.path))


def write_atomic(path: str | os.PathLike, data: str | bytes | Iterable[str], single_writer: bool = False) -> None:
    """Write `data` (bytes, a string, or strings streamed one after the other, as UTF-8) to `path` through a
    temporary file in the same folder and an atomic rename.

    The temporary name is unique, unless `single_writer` (a folder only one process writes, such as a pool):
    then it is `<name>.tmp`, so that the leftover of a killed write is overwritten when the work resumes."""
    with atomic_output(path, single_writer=single_writer) as handle:
        if isinstance(data, bytes | str):
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        else:
            for part in data:
                handle.write(part.encode("utf-8"))



def write_json(path: str | os.PathLike, obj: dict) -> None:
    """`obj` as indented JSON (numpy numbers as floats), written atomically."""
    write_atomic(path, json.dumps(obj, indent=2, default=float))


@contextmanager
def atomic_output(path: str | os.PathLike, text: bool = False, single_writer: bool = False) -> Iterator:
    """An open file (binary, or UTF-8 text with `text`) that lands at `path` when the block ends without an
    error, and is removed otherwise: a reader never sees half of it, however long the writing takes."""
    path = Path(path)
    if single_writer:
        tmp = str(path.with_name(path.name + ".tmp"))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    else:
        sweep_leftovers(path.parent, path.name)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") if text else os.fdopen(fd, "wb") as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def staging(folder: str | os.PathLike) -> Path:
    """A fresh, empty, hidden folder beside `folder` (created with its parents), to build it in."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(folder.parent, folder.name)
    return Path(tempfile.mkdtemp(prefix=temp_prefix(folder.name), suffix=".tmp", dir=folder.parent))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def replace_folder(tmp: str | os.PathLike, folder: str | os.PathLike) -> None:
    """Swap a fully written folder `tmp` into place at `folder`, so readers never see half a model.

    The old folder is moved aside under a unique hidden name and removed after the swap. When another writer
    puts its own copy in place between the two renames, the swap is retried (the last writer wins).
    """
    tmp, folder = Path(tmp), Path(folder)
    error: OSError | None = None
    for attempt in range(100):
        aside = folder.with_name(f"{temp_prefix(folder.name)}{uuid.uuid4().hex[:8]}.old")
        old: Path | None = aside
        try:
            folder.rename(aside)
        except FileNotFoundError:
            old = None
        try:
            tmp.rename(folder)
        except OSError as exc:  # another writer's folder landed in between: move it aside too, and retry
            error = exc
            if old is not None:
                _remove(old)
            time.sleep(0.001 * attempt)
            continue
        if old is not None:
            _remove(old)
        return
    shutil.rmtree(tmp, ignore_errors=True)
    raise TinyDistillError(f"{folder}: could not replace it; other processes keep writing it ({error})")


# ------------------------------------------------------------------------------------------------ kinds


def _json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def folder_kind(path: str | os.PathLike) -> str | None:
    """"student", "teacher", "run", "pool" or "exports" (a folder holding only student folders), by marker
    files; None for anything else (a file, an empty or a user's folder)."""
    path = Path(path)
    if not path.is_dir():
        return None
    if (path / "config.json").is_file() and (_json(path / "config.json") or {}).get("format") == STUDENT_FORMAT:
        return "student"
    if (path / "teacher.json").is_file():
        return "teacher"
    if (path / RUN_MARKER).is_file() or (path / "results.json").is_file() \
            or (path / "teacher" / "teacher.json").is_file():  # runs before run.json existed
        return "run"
    if (_json(path / "manifest.json") or {}).get("format") == "tinydistill-pool":
        return "pool"
    children = [p for p in path.iterdir() if not p.name.startswith(".")]
    if children and all(folder_kind(p) == "student" for p in children):
        return "exports"
    return None


def is_run_folder(path: str | os.PathLike) -> bool:
    """A folder holding `students/` that is not itself a student: what `export` and `predict` take as a run."""
    path = Path(path)
    return (path / "students").is_dir() and not (path / "config.json").exists()


def _inside(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_out(out: str | os.PathLike, kind: str, overwrite: bool = False, source: str | os.PathLike | None = None,
              option: str = "--out", inside_ok: bool = False) -> Path:
    """Refuse to write a `kind` folder at `out` where that would lose something tinydistill did not write.

    Refused always: `out` is `source`, or a folder above it, or (unless `inside_ok`) inside it. Refused unless
    `overwrite`: `out` exists and is a file, or a non-empty folder that is not a `kind` folder. Returns `out`.
    """
    out = Path(out)
    if source is not None:
        src, dst = Path(source).resolve(), out.resolve()
        if src == dst:
            raise TinyDistillError(f"{out}: the output would replace its own source; choose another {option}")
        if _inside(src, dst):
            raise TinyDistillError(f"{out}: the output is a folder above its source {source}; writing it would "
                                   f"delete the source; choose another {option}")
        if _inside(dst, src) and not inside_ok:
            raise TinyDistillError(f"{out}: the output is inside its source {source}; choose another {option}")
    for attempt in range(3):  # another writer may be swapping the folder right now: look again
        if not out.exists() and not out.is_symlink():
            return out
        try:
            if out.is_dir() and not any(out.iterdir()):
                return out
            found = folder_kind(out)
        except FileNotFoundError:
            found = None
        if found == kind:
            return out
        time.sleep(0.05 * (attempt + 1))
    what = "a file" if not out.is_dir() else _NAMES[found] if found else "a folder that tinydistill did not write"
    if overwrite:
        log.warning("%s: %s; replacing it, as --overwrite says", out, what)
        return out
    how = "save with overwrite=True" if option == "folder" else "add --overwrite"
    raise TinyDistillError(f"{out}: exists and is {what}, not {_NAMES[kind]}; choose another {option}, "
                           f"or {how} to replace it")


def make_room(out: str | os.PathLike, kind: str, overwrite: bool = False) -> Path:
    """`check_out` for a folder that is filled in place (a run folder and its parts) rather than swapped in
    whole: with `overwrite`, what is at `out` and is not a `kind` folder is removed first. Returns `out`."""
    out = check_out(out, kind, overwrite)
    if overwrite and (out.exists() or out.is_symlink()) and folder_kind(out) != kind:
        _remove(out)
    return out


def check_out_file(out: str | os.PathLike, overwrite: bool = False, ours: bool = False,
                   option: str = "--out") -> Path:
    """Refuse to write the file `out` over a folder, or over a file tinydistill did not write (`ours` says
    whether the existing file is known to be ours) unless `overwrite`; its folder must exist."""
    out = Path(out)
    if out.is_dir():
        raise TinyDistillError(f"{out}: is a folder; {option} takes a file name")
    if not out.parent.is_dir():
        raise TinyDistillError(f"{out}: folder {out.parent} does not exist; create it first or choose another "
                               f"{option}")
    if out.exists() and not ours and not overwrite:
        raise TinyDistillError(f"{out}: exists and was not written by tinydistill; choose another {option}, "
                               "or add --overwrite to replace it")
    return out


# ------------------------------------------------------------------------------------------------ transfer file


def transfer_labels_path(path: str) -> str:
    """The `.labels.json` beside a transfer file (`transfer.jsonl` -> `transfer.labels.json`): the label names,
    one per logit, in the teacher's order."""
    return os.path.splitext(path)[0] + ".labels.json"


def write_transfer_file(path: str | os.PathLike, texts: Sequence[str], logits: np.ndarray,
                        labels: Sequence[str]) -> None:
    """The transfer file `label` writes and `distil` reads: one `{"text": ..., "logits": [...]}` line a text
    (logits rounded to 6 decimals), and its `.labels.json`; each written atomically."""
    write_atomic(path, (json.dumps({"text": text, "logits": [round(float(v), 6) for v in row]}) + "\n"
                        for text, row in zip(texts, logits)))
    write_atomic(transfer_labels_path(str(path)), json.dumps(list(labels)))


def read_transfer_lines(lines: Iterable[str], source: str) -> tuple[list[str], np.ndarray]:
    """The texts and logits of a transfer file's lines; a bad line is a one-line error naming `source:line`."""
    texts: list[str] = []
    logits: list[list[float]] = []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
            text, values = row["text"], [float(v) for v in row["logits"]]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise TinyDistillError(f"{source}:{number}: expected {{\"text\": ..., \"logits\": [...]}}") from None
        if not isinstance(text, str) or len(values) < 2 or (logits and len(values) != len(logits[0])) \
                or not all(abs(v) <= 1e6 for v in values):  # also false for NaN
            width = len(logits[0]) if logits else "2 or more"
            raise TinyDistillError(f"{source}:{number}: expected a text and {width} finite logits, like "
                                   "the lines before it")
        texts.append(text)
        logits.append(values)
    if not texts:
        raise TinyDistillError(f"{source}: no rows")
    return texts, np.asarray(logits, dtype=np.float32)


def read_transfer_labels(data: bytes, where: str, width: int) -> list[str]:
    """The label names of a `.labels.json` (its bytes), checked to give one name per logit."""
    try:
        labels = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        labels = None
    if not isinstance(labels, list) or len(labels) != width:
        raise TinyDistillError(f"{where}: expected a JSON list of {width} label names, one per logit")
    return labels


# ------------------------------------------------------------------------------------------------ hashes


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def hashes(folder: Path, names: list[str]) -> dict[str, str]:
    """{relative name: sha256} of the files `names` under `folder`."""
    return {name: sha256_file(folder / name) for name in names}


def check_hashes(folder: Path, recorded: object, where: Path) -> None:
    """Check the files that `recorded` ({relative name: sha256}, from `where`) lists; None is a folder saved
    before hashes were recorded, and loads unchecked."""
    if recorded is None:
        return
    if not isinstance(recorded, dict):
        raise TinyDistillError(f"{where}: 'sha256' must map file names to hashes")
    for name, expected in recorded.items():
        path = folder / name
        if not _inside(path.resolve(), folder.resolve()):
            raise TinyDistillError(f"{where}: 'sha256' names {name!r}, outside the folder")
        if not path.is_file():
            raise TinyDistillError(f"{path}: missing (listed in {where.name})")
        if sha256_file(path) != expected:
            raise TinyDistillError(f"{path}: corrupt: its sha256 differs from the one recorded in {where.name} "
                                   "when it was saved")


# ------------------------------------------------------------------------------------------------ locks


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on `folder/.lock` (fcntl.flock); a second process waits for the first.

    Where fcntl is missing (Windows) the block runs unlocked."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("%s: another process is using this folder; waiting for it to finish", folder)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
