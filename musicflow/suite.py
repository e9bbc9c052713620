"""The validation policy: the GX suite in ``expectations/midi_files.json``, read as rules.

The suite file is the single statement of policy; this module only reads it. Each expectation's
``meta`` says what a failing row gets: ``{"outcome": "quarantine" | "warning", "code": ...}``.
Quarantine codes have a precedence, their order in the file (the first failing one is the
reason), and a row quarantined by one code is not judged by later ones, so the suite runs in
:func:`stages`: one per quarantine code in precedence order, then one of all warnings.

Public: :class:`Rule`, :func:`load_suite_config`, :func:`suite_rules`,
:func:`quarantine_precedence`, :func:`stages`; ``SUITE_NAME``, ``SUITE_FILE`` and the outcome
names. Pure (JSON only): Great Expectations itself is driven by ``musicflow/gx.py``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from importlib import resources
from typing import Any

SUITE_NAME = "midi_files"
SUITE_FILE = "midi_files.json"
QUARANTINE = "quarantine"
WARNING = "warning"
ACCEPTED = "accepted"
QUARANTINED = "quarantined"
_ID_NAMESPACE = uuid.UUID("6f0b1f8e-3c55-4a51-9a8e-2d1c5a7b9e10")


@dataclass(frozen=True)
class Rule:
    """One expectation of the suite, as stored, with the verdict a failing row gets."""

    id: str
    config: dict[str, Any]
    outcome: str
    code: str

    @property
    def type(self) -> str:
        return str(self.config["type"])

    @property
    def column(self) -> str:
        return str(self.config["kwargs"].get("column", ""))


def load_suite_config() -> dict[str, Any]:
    """The suite as stored in the package (``musicflow.expectations``), as a plain dict."""
    text = resources.files("musicflow.expectations").joinpath(SUITE_FILE).read_text("utf-8")
    return json.loads(text)


def suite_bytes() -> bytes:
    """The suite file's bytes, as cache keys hash them."""
    return resources.files("musicflow.expectations").joinpath(SUITE_FILE).read_bytes()


def suite_rules(suite_config: dict[str, Any] | None = None) -> list[Rule]:
    """The suite's expectations with their outcome and code, checked so no gate goes missing.

    Raises ``ValueError`` on a meta without a valid outcome/code, or on a quarantine code whose
    expectations are not contiguous (its precedence would be ambiguous).
    """
    config = load_suite_config() if suite_config is None else suite_config
    rules: list[Rule] = []
    for i, exp in enumerate(config["expectations"]):
        meta = exp.get("meta") or {}
        outcome, code = meta.get("outcome"), meta.get("code")
        if outcome not in (QUARANTINE, WARNING) or not isinstance(code, str) or not code:
            raise ValueError(f"expectation {i} of {SUITE_FILE} has no valid meta outcome/code")
        rule_id = str(uuid.uuid5(_ID_NAMESPACE, f"{config['name']}:{i}"))
        rules.append(Rule(id=rule_id, config=exp, outcome=outcome, code=code))
    seen: list[str] = []
    for rule in rules:
        if rule.outcome != QUARANTINE:
            continue
        if rule.code in seen and seen[-1] != rule.code:
            raise ValueError(f"quarantine code {rule.code!r} is split in {SUITE_FILE}")
        if rule.code not in seen:
            seen.append(rule.code)
    return rules


def quarantine_precedence(rules: list[Rule] | None = None) -> list[str]:
    """Quarantine codes in the order they are tried: their order in the suite file."""
    codes: list[str] = []
    for rule in suite_rules() if rules is None else rules:
        if rule.outcome == QUARANTINE and rule.code not in codes:
            codes.append(rule.code)
    return codes


def stages(rules: list[Rule]) -> list[tuple[str, list[Rule]]]:
    """One stage per quarantine code in precedence order, then one stage of all warnings."""
    stages: list[tuple[str, list[Rule]]] = []
    for code in quarantine_precedence(rules):
        stages.append((code, [r for r in rules if r.outcome == QUARANTINE and r.code == code]))
    warning_rules = [r for r in rules if r.outcome == WARNING]
    if warning_rules:
        stages.append((WARNING, warning_rules))
    return stages
