"""tasks/registry.py: the champion rule (pure)."""

from __future__ import annotations

import math

from musicflow.tasks.registry import is_better


def m(onenn: float, l1: float = 0.5, blank: float = 0.0) -> dict[str, float]:
    return {"onenn_accuracy": onenn, "pitch_hist_l1": l1, "blank_rate": blank}


def test_first_eligible_version_wins() -> None:
    assert is_better(m(0.9), None)


def test_mostly_blank_is_never_champion() -> None:
    assert not is_better(m(0.6, blank=0.51), None)
    assert not is_better(m(0.6, blank=0.6), m(0.99))


def test_lower_onenn_wins_and_ties_go_to_pitch_histogram() -> None:
    assert is_better(m(0.80), m(0.90))
    assert not is_better(m(0.90), m(0.80))
    assert is_better(m(0.805, l1=0.3), m(0.80, l1=0.4))  # within 0.01: pitch_hist_l1 decides
    assert not is_better(m(0.80, l1=0.4), m(0.80, l1=0.4))  # equal is not better


def test_missing_metric_is_not_better() -> None:
    assert not is_better({"blank_rate": 0.0, "onenn_accuracy": math.nan}, None)


def test_a_registered_version_is_plain_data_with_its_uri() -> None:
    import dataclasses
    import json

    from musicflow.tasks.registry import RegisteredModel

    registered = RegisteredModel(name="bach-gan", version=3, run_id="abc")
    assert registered.model_uri == "models:/bach-gan/3"
    assert json.loads(json.dumps(dataclasses.asdict(registered)))["version"] == 3
