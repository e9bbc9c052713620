"""tasks/registry.py: the champion rule (pure)."""

from __future__ import annotations

import math

import pytest

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


@pytest.mark.integration  # a real MLflow store
def test_a_run_that_fails_after_promotion_gives_the_champion_back(
    workspace_home, monkeypatch
) -> None:
    """Issue 23 item 9: a version promoted before its pieces and report, which then fail (a
    full disk), does not stay champion; the real alias in a real store goes back to the
    previous champion, or away when there was none."""
    from musicflow.adapters import tracking
    from musicflow.tasks import registry

    client = tracking.client()
    client.create_registered_model("d-vae")
    for _ in range(2):
        client.create_model_version("d-vae", source="file:///nowhere")

    def promote(registered: registry.RegisteredModel) -> bool:  # the rule says: better
        tracking.set_champion(registered.name, registered.version)
        return True

    monkeypatch.setattr(registry, "promote", promote)
    for version, before in ((1, None), (2, "1")):
        new = registry.RegisteredModel("d-vae", version, run_id="")
        with pytest.raises(OSError), registry.champion_once_complete(new) as promoted:
            assert promoted and tracking.champion_version("d-vae") == str(version)
            raise OSError(28, "No space left on device")
        assert tracking.champion_version("d-vae") == before
        with registry.champion_once_complete(new):
            pass  # completed: it stays champion
        assert tracking.champion_version("d-vae") == str(version)
