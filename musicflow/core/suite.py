"""The validation policy: the GX suite in ``expectations/midi_files.json``, read as rules.

The suite file is the single statement of policy; this module only reads it. Each expectation's
``meta`` says what a failing row gets: ``{"outcome": "quarantine" | "warning", "code": ...}``.
Quarantine codes have a precedence, their order in the file (the first failing one is the
reason), and a row quarantined by one code is not judged by later ones, so the suite runs in
:func:`stages`: one per quarantine code in precedence order, then one of all warnings.

Public: :class:`Rule`, :func:`load_suite_config`, :func:`suite_rules`,
:func:`quarantine_precedence`, :func:`stages`, :func:`judge`; ``SUITE_NAME``, ``SUITE_FILE`` and
the outcome names. Pure (JSON only): Great Expectations itself is driven by
``musicflow/adapters/gx.py``;
:func:`judge` reads the same rules for one record without it (a ``generate`` prompt: GX's
import alone takes seconds).
"""

from __future__ import annotations

import json
import re
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


def _parameter(value: Any, params: dict[str, int]) -> Any:
    """A bound as GX reads it: a number, or ``{"$PARAMETER": "name"}`` / ``"name ± int"``."""
    if not isinstance(value, dict):
        return value
    match = re.fullmatch(r"\s*(\w+)\s*(?:([+-])\s*(\d+))?\s*", str(value.get("$PARAMETER", "")))
    if match is None or match[1] not in params:
        raise ValueError(f"{SUITE_FILE}: cannot evaluate the parameter {value!r}")
    offset = int(match[3] or 0) * (-1 if match[2] == "-" else 1)
    return params[match[1]] + offset


def _passes(rule: Rule, value: Any, params: dict[str, int]) -> bool:
    """One record's value against one rule, with GX's semantics: only ``not_be_null`` judges a
    missing value, every other expectation passes it."""
    kwargs = rule.config["kwargs"]
    if rule.type == "expect_column_values_to_not_be_null":
        return value is not None
    if value is None:
        return True
    if rule.type == "expect_column_values_to_be_in_set":
        return value in kwargs["value_set"]
    if rule.type == "expect_column_values_to_not_be_in_set":
        return value not in kwargs["value_set"]
    if rule.type == "expect_column_values_to_be_between":
        low = _parameter(kwargs.get("min_value"), params)
        high = _parameter(kwargs.get("max_value"), params)
        return (low is None or value >= low) and (high is None or value <= high)
    raise ValueError(f"{SUITE_FILE}: judge() cannot evaluate {rule.type}")


def judge(record: dict[str, Any], params: dict[str, int]) -> tuple[str | None, list[str]]:
    """The verdict the suite gives one record (the parser's fields plus ``size_bytes``):
    the quarantine code (None: accepted) and, when accepted, the sorted warning codes. The
    same stages and precedence as the audit, without Great Expectations."""
    rules = suite_rules()
    warnings: set[str] = set()
    for code, stage in stages(rules):
        for rule in stage:
            if not _passes(rule, record.get(rule.column), params):
                if rule.outcome == QUARANTINE:
                    return code, []
                warnings.add(rule.code)
    return None, sorted(warnings)
