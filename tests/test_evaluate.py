"""Calibration and agreement metrics on cases small enough to compute by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from tinydistill.evaluate import agreement, chance, ece, fit_temperature
from tinydistill.report import warnings_for
from tinydistill.runtime import softmax


def test_ece_by_hand():
    # confidences 0.90 (right) and 0.92 (wrong) share the bin (13/15, 14/15]: accuracy 0.5, confidence 0.91;
    # 0.70 (right) is alone in (10/15, 11/15]; 0.55 (wrong) alone in (8/15, 9/15]
    proba = [[0.9, 0.1], [0.08, 0.92], [0.3, 0.7], [0.45, 0.55]]
    gold = [0, 0, 1, 0]
    expected = 2 / 4 * abs(0.5 - 0.91) + 1 / 4 * abs(1 - 0.7) + 1 / 4 * abs(0 - 0.55)  # = 0.4175
    assert ece(gold, proba) == pytest.approx(expected) == pytest.approx(0.4175)
    assert ece([0, 1], [[1.0, 0.0], [0.0, 1.0]]) == 0.0  # certain and right
    assert ece([1, 1], [[1.0, 0.0], [1.0, 0.0]]) == 1.0  # certain and wrong
    assert ece([], np.zeros((0, 2))) == 0.0


def test_agreement_and_chance():
    assert agreement([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    gold = np.array([1] * 3 + [0] * 7)
    assert chance("f1", gold, 2) == pytest.approx(f1_score(gold, np.ones(10)))  # always "positive": 2p/(1+p)
    assert chance("mcc", gold, 2) == 0.0 and chance("accuracy", gold, 2) == 0.7
    three = np.array([0] * 5 + [1] * 3 + [2] * 2)
    best = max(f1_score(three, np.full(10, k), average="macro", labels=[0, 1, 2], zero_division=0) for k in range(3))
    assert chance("f1", three, 3) == pytest.approx(best) == pytest.approx((2 * 0.5 / 1.5) / 3)


def test_fit_temperature_recovers_the_scale():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(20_000, 3))
    target = softmax(logits / 2.0)
    assert fit_temperature(logits, target) == pytest.approx(2.0, rel=1e-3)  # soft targets: exact
    labels = np.array([rng.choice(3, p=p) for p in target])
    assert fit_temperature(logits, labels) == pytest.approx(2.0, rel=0.05)  # sampled labels: close
    assert ece(labels, softmax(logits / fit_temperature(logits, labels))) < ece(labels, softmax(logits))


def results(teacher: float, students: dict[str, float], metric: str = "f1", floor: float = 0.5) -> dict:
    rows = [{"model": "teacher (minilm)", "headline": teacher}] + [{"model": m, "headline": h}
                                                                   for m, h in students.items()]
    return {"metric": metric, "chance": floor, "rows": rows}


def test_warnings_say_what_helps():
    assert warnings_for(results(0.88, {"cbow": 0.87, "bilstm": 0.86, "cbow-nods": 0.70})) == []
    lines = warnings_for(results(0.80, {"cbow": 0.76, "bilstm": 0.775}))
    assert len(lines) == 1 and lines[0].startswith("cbow is 4.0 F1 points below its teacher (76.0 against 80.0)")
    assert "this run's BiLSTM (77.5 F1)" in lines[0] and "--students bilstm" not in lines[0]  # it trained one
    assert "tinydistill augment" in lines[0] and "--teacher mpnet-base" in lines[0]
    alone = warnings_for(results(0.80, {"cbow": 0.76}))  # no BiLSTM in the run: suggest one
    assert "--students bilstm" in alone[0] and "this run's" not in alone[0]
    grown = results(0.80, {"cbow": 0.76})  # a small transfer set grown already: augmenting is not the advice
    grown["grown"] = {"method": "glove", "from": 3000, "texts": 20000, "students": ["cbow"]}
    assert "tinydistill augment" not in warnings_for(grown)[0]
    assert "more unlabelled text of your own (--transfer FILE" in warnings_for(grown)[0]
    strong = results(0.90, {"cbow": 0.80})
    strong["rows"][0]["model"] = "teacher (mpnet-base)"
    assert "--teacher mpnet-base" not in warnings_for(strong)[0]  # the stronger teacher taught already
    assert "`" not in lines[0]  # quoted as code in Markdown tables
    weak = warnings_for(results(0.03, {"cbow": -0.01, "bilstm": -0.02}, metric="mcc", floor=0.0))
    assert len(weak) == 3 and weak[0].startswith("the teacher scores 3.0 MCC (chance 0.0), within 5 points of chance")
    assert "--teacher mpnet-base" in weak[0] and "--students bilstm" not in weak[2]  # the BiLSTM is one already
    # CoLA's MiniLM teacher: 9 MCC, but less accurate than always answering "acceptable"
    cola = results(0.09, {"cbow": 0.08}, metric="mcc", floor=0.0)
    cola["rows"][0]["accuracy"], cola["chance_accuracy"] = 0.652, 0.686
    assert warnings_for(cola) == ["the teacher scores 65.2% accuracy (always answering the largest class: 68.6%), "
                                  "within 5 points of chance: its students cannot learn what it does not know; what "
                                  "usually helps: a stronger teacher (--teacher mpnet-base) or more labels"]
