"""musicflow/core/champion.py: the champion rule and the best version of a dataset across models."""

from __future__ import annotations

from types import SimpleNamespace

from musicflow.core.champion import (
    RULE_TEXT,
    best_of_dataset,
    best_of_versions,
    best_reason,
    eligible,
    is_better,
    silent,
)


def v(
    model: str, onenn: float, l1: float = 0.5, blank: float = 0.0, base: float | None = None
) -> SimpleNamespace:
    metrics = {"onenn_accuracy": onenn, "pitch_hist_l1": l1, "blank_rate": blank}
    if base is not None:
        metrics["blank_rate_baseline"] = base
    return SimpleNamespace(model=model, version=1, metrics=metrics)


def test_best_is_the_champion_with_the_lowest_onenn() -> None:
    assert best_of_dataset([v("d-gan", 0.95), v("d-vae", 0.90)]).model == "d-vae"


def test_within_the_tie_window_the_pitch_histogram_decides() -> None:
    best = best_of_dataset([v("d-gan", 0.905, l1=0.2), v("d-vae", 0.90, l1=0.4)])
    assert best.model == "d-gan"
    # outside the window, onenn alone decides
    assert best_of_dataset([v("d-gan", 0.92, l1=0.1), v("d-vae", 0.90, l1=0.4)]).model == "d-vae"


def test_the_best_of_all_versions_is_among_the_model_champions_only() -> None:
    champion, better = v("d-vae", 0.90), v("d-vae", 0.70)  # scores better, not the champion
    champion.champion, better.champion = True, False
    assert best_of_versions([better, champion]) is champion
    assert best_of_versions([better]) is None


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


def test_a_version_that_leaves_silent_windows_never_ranks_above_one_that_does_not() -> None:
    rnn = v("d-rnn", 0.712, l1=0.1, blank=0.037, base=0.0)  # the silent champion
    vae = v("d-vae", 0.80, l1=0.3, blank=0.0, base=0.0)
    assert silent(rnn.metrics) and not silent(vae.metrics)
    assert best_of_dataset([rnn, vae]) is vae
    assert is_better(vae.metrics, rnn.metrics) and not is_better(rnn.metrics, vae.metrics)
    # no worse than the real music: not silent, and onenn decides again
    assert not silent(v("d-gan", 0.7, blank=0.01, base=0.01).metrics)
    assert best_of_dataset([v("d-rnn", 0.7, blank=0.01, base=0.02), vae]).model == "d-rnn"
    # a baseline that was never measured does not demote anyone
    assert not silent(v("d-rnn", 0.7, blank=0.2).metrics)
    # when every champion leaves silent windows, the usual rule ranks them
    both = [rnn, v("d-vae", 0.75, blank=0.01, base=0.0)]
    assert best_of_dataset(both) is rnn
    assert is_better(rnn.metrics, both[1].metrics)


def test_the_reason_names_the_silent_champion_it_passed_over() -> None:
    rnn = v("d-rnn", 0.712, l1=0.1, blank=0.037, base=0.0)
    vae = v("d-vae", 0.80, l1=0.3, blank=0.0, base=0.0)
    assert best_reason([rnn, vae]) == (
        "d-rnn v1 has the lower onenn_accuracy (0.712 against 0.800) but leaves silent windows "
        "(blank_rate 0.037, real music 0.000), so it ranks below d-vae v1, which does not."
    )
    assert "silent windows" in RULE_TEXT and "baseline" in RULE_TEXT


def test_the_reason_says_when_a_tie_break_decided() -> None:
    rnn, vae = v("d-rnn", 0.712, l1=0.12), v("d-vae", 0.721, l1=0.08)
    assert best_of_dataset([rnn, vae]) is vae
    assert best_reason([rnn, vae]) == (
        "Tie-break: d-vae v1 and d-rnn v1 are within 0.01 of each other on onenn_accuracy "
        "(0.721, 0.712), a tie by the rule, so the lower pitch_hist_l1 decided (0.080, 0.120)."
    )
    # a clear win on onenn_accuracy needs no words; nothing eligible has no best to explain
    assert best_reason([v("d-rnn", 0.70), v("d-vae", 0.80)]) is None
    assert best_reason([v("d-rnn", 0.70, blank=0.9)]) is None
