"""The teacher-logit cache: one SQLite file (`folders.logit_cache_path()`) shared by every run and labelling job.

Rows are keyed by a teacher's logit key (`Teacher.logit_key`: its fingerprint, plus the precision when not fp32)
and the text's hash, so a second run, or a run killed half way, computes only what is missing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class LogitCache:
    """Teacher logits on disk (SQLite), keyed by teacher fingerprint and text hash; safe to kill mid-way.

    Rows are raw float32 bytes. `get` checks each row it reads (the teacher's number of classes, finite, no
    larger than `LIMIT`) and treats a bad one as missing, so it is recomputed and written again, with a warning.
    A file that is not a readable SQLite database (truncated, overwritten) is renamed aside and a new cache
    started, with a warning naming both files.
    """

    LIMIT = 1e6  # a classifier's logits are O(10); a larger value in the cache is damage, not a logit

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._open()

    def _open(self) -> None:
        self.db = sqlite3.connect(self.path, timeout=120)  # other runs may be writing: wait, do not fail
        try:
            self.db.execute("CREATE TABLE IF NOT EXISTS logits (teacher TEXT, key BLOB, value BLOB, "
                            "PRIMARY KEY (teacher, key))")
        except sqlite3.OperationalError:
            raise
        except sqlite3.DatabaseError as exc:
            self._set_aside(exc)

    def _set_aside(self, exc: Exception) -> None:
        """Move a corrupt cache file out of the way (kept for inspection) and start an empty one."""
        self.db.close()
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        for suffix in ("", "-journal", "-wal", "-shm"):
            part = Path(str(self.path) + suffix)
            if part.exists():
                part.rename(Path(str(aside) + suffix))
        log.warning("logit cache %s is unreadable (%s); moved it to %s and started a new one", self.path, exc,
                    aside.name)
        self.db = sqlite3.connect(self.path, timeout=120)
        self.db.execute("CREATE TABLE IF NOT EXISTS logits (teacher TEXT, key BLOB, value BLOB, "
                        "PRIMARY KEY (teacher, key))")

    @staticmethod
    def _key(text: str) -> bytes:
        return hashlib.sha1(text.encode("utf-8")).digest()

    def get(self, teacher: str, texts: Sequence[str], width: int | None = None) -> list[np.ndarray | None]:
        """The cached logits of each text (None where missing or bad); `width`: the number of classes."""
        try:
            return self._get(teacher, texts, width)
        except sqlite3.OperationalError:
            raise
        except sqlite3.DatabaseError as exc:
            self._set_aside(exc)
            return [None] * len(texts)

    def _get(self, teacher: str, texts: Sequence[str], width: int | None) -> list[np.ndarray | None]:
        found: dict[bytes, np.ndarray] = {}
        bad = 0
        keys = [self._key(t) for t in texts]
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 900):  # SQLite's bound-parameter limit
            part = unique[start: start + 900]
            query = f"SELECT key, value FROM logits WHERE teacher=? AND key IN ({','.join('?' * len(part))})"
            for key, value in self.db.execute(query, [teacher, *part]):
                row = np.frombuffer(value, dtype=np.float32) if isinstance(value, bytes) and len(value) % 4 == 0 \
                    else None
                if row is None or (width is not None and len(row) != width) or not len(row) \
                        or not (np.abs(row) <= self.LIMIT).all():  # also false for NaN
                    bad += 1
                    continue
                found[key] = row
        if bad:
            log.warning("logit cache %s: %d cached row(s) of teacher %s are damaged (wrong length, NaN, infinite "
                        "or huge values); recomputing them", self.path, bad, teacher)
        return [found.get(k) for k in keys]

    def put(self, teacher: str, texts: Sequence[str], values: np.ndarray) -> None:
        rows = [(teacher, self._key(t), np.asarray(v, np.float32).tobytes()) for t, v in zip(texts, values)]
        try:
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO logits VALUES (?, ?, ?)", rows)
        except sqlite3.OperationalError:
            raise
        except sqlite3.DatabaseError as exc:
            self._set_aside(exc)
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO logits VALUES (?, ?, ?)", rows)
