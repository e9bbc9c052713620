"""musicflow/champion.py: the champion rule and the best version of a dataset across models."""

from __future__ import annotations

from types import SimpleNamespace

from musicflow.champion import best_of_dataset, eligible, is_better


def v(model: str, onenn: float, l1: float = 0.5, blank: float = 0.0) -> SimpleNamespace:
    metrics = {"onenn_accuracy": onenn, "pitch_hist_l1": l1, "blank_rate": blank}
    return SimpleNamespace(model=model, version=1, metrics=metrics)


def test_best_is_the_champion_with_the_lowest_onenn() -> None:
    assert best_of_dataset([v("d-gan", 0.95), v("d-vae", 0.90)]).model == "d-vae"


def test_within_the_tie_window_the_pitch_histogram_decides() -> None:
    best = best_of_dataset([v("d-gan", 0.905, l1=0.2), v("d-vae", 0.90, l1=0.4)])
    assert best.model == "d-gan"
    # outside the window, onenn alone decides
    assert best_of_dataset([v("d-gan", 0.92, l1=0.1), v("d-vae", 0.90, l1=0.4)]).model == "d-vae"


def test_mostly_blank_or_unscored_champions_are_never_best() -> None:
    assert best_of_dataset([v("d-gan", 0.6, blank=0.9), v("d-vae", 0.99)]).model == "d-vae"
    assert best_of_dataset([v("d-gan", 0.6, blank=0.9)]) is None
    assert best_of_dataset([]) is None
    assert not eligible({"blank_rate": 0.0})


def test_the_best_beats_every_other_champion_by_the_rule() -> None:
    champions = [v("a", 0.93, 0.3), v("b", 0.90, 0.5), v("c", 0.905, 0.45), v("d", 0.99, 0.1)]
    best = best_of_dataset(champions)
    assert best.model == "c"
    assert not any(is_better(c.metrics, best.metrics) for c in champions if c is not best)
