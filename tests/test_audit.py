"""tasks/audit.py: records + verdicts → the manifest (docs/dataset.md), and its summary."""

from __future__ import annotations

import pandas as pd

from musicflow.models.data import heldout_split_of_files, validation_split
from musicflow.tasks.audit import audit_files, build_manifest, file_roles, summarize


def _records() -> pd.DataFrame:
    base = {"size_bytes": 100, "midi_type": 1, "ticks_per_beat": 96, "n_tracks": 2}
    return pd.DataFrame(
        [
            {**base, "source_path": "b.mid", "source_sha256": "bb", "duplicate_of": None,
             "n_notes": 40, "pitch_min": 40, "pitch_max": 80, "n_segments": 3},
            {**base, "source_path": "a.mid", "source_sha256": "aa", "duplicate_of": None,
             "n_notes": 0, "pitch_min": None, "pitch_max": None, "n_segments": 0},
            {"source_path": "c/b-copy.mid", "source_sha256": "bb", "size_bytes": 100,
             "duplicate_of": "b.mid"},
        ]
    )  # fmt: skip


def _outcomes() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source_path": ["b.mid", "a.mid"],
            "status": ["accepted", "quarantined"],
            "reason": [None, "no_notes"],
            "warnings": [["drums_ignored"], []],
        }
    )


def test_manifest_has_one_sorted_row_per_file_and_duplicates_point_at_the_first() -> None:
    manifest = build_manifest(_records(), _outcomes())
    assert manifest.source_path.tolist() == ["a.mid", "b.mid", "c/b-copy.mid"]
    assert manifest.status.tolist() == ["quarantined", "accepted", "duplicate"]
    assert [None if pd.isna(r) else r for r in manifest.reason] == ["no_notes", None, "b.mid"]
    assert [list(w) for w in manifest.warnings] == [[], ["drums_ignored"], []]
    dup = manifest.set_index("source_path").loc["c/b-copy.mid"]
    assert dup.n_notes == 40 and dup.pitch_max == 80  # the first copy's numbers
    assert manifest.n_segments.tolist() == [0, 3, 0]  # only accepted files have windows
    assert str(manifest.n_notes.dtype) == "Int32"


def test_summary_counts_outcomes_reasons_warnings_and_windows() -> None:
    summary = summarize(build_manifest(_records(), _outcomes()))
    assert summary["n_files"] == 3
    assert summary["status"] == {"quarantined": 1, "accepted": 1, "duplicate": 1}
    assert summary["quarantine_reasons"] == {"no_notes": 1}
    assert summary["warnings"] == {"drums_ignored": 1}
    assert summary["quarantined_files"] == [("a.mid", "no_notes")]
    assert summary["warned_files"] == [("b.mid", ["drums_ignored"])]
    assert summary["n_segments"] == 3


def test_every_file_has_the_role_the_training_splits_give_it() -> None:
    n = 60
    manifest = pd.DataFrame(
        {
            "source_path": [f"f{i:02d}.mid" for i in range(n)] + ["q.mid", "empty.mid", "d.mid"],
            "source_sha256": [f"{i:064x}" for i in range(n)] + ["q" * 64, "e" * 64, "0" * 64],
            "status": ["accepted"] * n + ["quarantined", "accepted", "duplicate"],
            "n_segments": pd.array([3] * n + [0, 0, 0], dtype="Int32"),
        }
    )
    roles = file_roles(manifest)
    train, heldout = heldout_split_of_files(manifest.source_sha256[:n])
    fit, validation = validation_split(train)
    expected = {s: "held-out" for s in heldout} | {s: "training" for s in fit}
    expected |= {s: "validation" for s in validation}
    assert roles[:n] == [expected[s] for s in manifest.source_sha256[:n]]
    assert roles[n:] == ["", "", ""]  # not in the shards: no role
    assert {"held-out", "validation", "training"} <= set(roles)


def test_audit_files_list_every_manifest_row() -> None:
    files = audit_files(build_manifest(_records(), _outcomes()))
    assert [(f.path, f.outcome, f.reason, f.windows) for f in files] == [
        ("a.mid", "quarantined", "no_notes", 0),
        ("b.mid", "accepted", "", 3),
        ("c/b-copy.mid", "duplicate", "b.mid", 0),
    ]
    assert files[1].warnings == ["drums_ignored"] and files[1].tracks == 2
    assert files[1].notes == 40 and files[1].role == "training"  # a lone file trains
    assert files[0].role == files[2].role == ""
