"""Students on the Hugging Face Hub: load by repo id (`org/name`), push a folder with its model card.

    runtime.load("org/sst2-cbow")                 # also Student.from_pretrained, `predict`, `serve`
    tinydistill push runs/sst2-200-s0/students/cbow org/sst2-cbow

Loading goes through `huggingface_hub.snapshot_download`, which reads the local Hub cache ($HF_HUB_CACHE) and
needs no network when the model is there (set HF_HUB_OFFLINE=1 to forbid it). A local folder always wins over
a repo id of the same spelling. Torch-free.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from tinydistill.errors import TinyDistillError

log = logging.getLogger(__name__)
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
FILES = ["config.json", "vocab.txt", "model.safetensors", "model.onnx", "README.md"]  # a student folder's files


def is_repo_id(name: str | os.PathLike) -> bool:
    """`org/name` with nothing else: no further slashes, no leading dot, no drive or home prefix."""
    return isinstance(name, str) and bool(REPO_ID.match(name)) and ".." not in name


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve(name: str | os.PathLike, revision: str | None = None) -> Path:
    """A local folder as it is; else a Hub repo id fetched (or read from the Hub cache) into a local folder.

    Anything that is neither comes back unchanged, so that the caller's own "not a model folder" error names it.
    """
    path = Path(name)
    if path.exists() or not is_repo_id(str(name)):
        return path
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise TinyDistillError(f"{name}: no such folder; loading a Hub repo id needs huggingface_hub "
                               "(pip install huggingface_hub)") from None
    # read at call time, not at huggingface_hub's import, so that a test or a user can set them late
    cache_dir = os.environ.get("HF_HUB_CACHE") or None
    try:
        folder = snapshot_download(str(name), revision=revision, cache_dir=cache_dir, allow_patterns=FILES,
                                   local_files_only=_offline())
    except Exception as exc:  # noqa: BLE001 - network, auth, not-found and cache errors all end the same way
        where = "not in the local Hub cache and HF_HUB_OFFLINE is set" if _offline() else \
            f"not found on the Hub ({type(exc).__name__})"
        raise TinyDistillError(f"{name}: no such folder, and as a Hub repo id it is {where}") from None
    log.info("%s: from the Hub cache at %s", name, folder)
    return Path(folder)


def push(folder: str | os.PathLike, repo_id: str, token: str | None = None, private: bool = False,
         commit_message: str | None = None) -> str:
    """Upload a student folder (saved or exported, with its README.md card) to the Hub; returns the repo URL.

    Creates the repo if needed (`HfApi.create_repo(exist_ok=True)`); the token defaults to huggingface_hub's
    (`HF_TOKEN` or `huggingface-cli login`). A folder without a card gets one written from its config first.
    """
    from tinydistill.cards import CARD, write_card
    from tinydistill.runtime import read_config

    folder = Path(folder)
    meta = read_config(folder)  # only student folders go up: checked before anything is sent
    if not is_repo_id(repo_id):
        raise TinyDistillError(f"{repo_id!r}: not a Hub repo id; expected 'org/name'")
    if not (folder / CARD).exists():
        write_card(folder, meta)
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise TinyDistillError("pushing needs huggingface_hub (pip install huggingface_hub)") from None
    api = HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model", allow_patterns=FILES,
                      commit_message=commit_message or f"tinydistill {meta['model_type']} student")
    return str(url)
