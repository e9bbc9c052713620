"""Domain exceptions: one type per kind of user-facing failure.

The CLI turns each into one clear line and exit code 1 (no traceback unless ``--debug``).
"""


class MusicflowError(Exception):
    """Base class of every error musicflow reports to the user."""


class MidiFormatError(MusicflowError):
    """A MIDI file cannot be read; ``code`` is a quarantine code of docs/dataset.md."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class DatasetError(MusicflowError):
    """A dataset is missing, empty or inconsistent (e.g. no accepted file, no shards)."""


class ModelError(MusicflowError):
    """A model cannot be trained, loaded or sampled (unknown name, bad URI, ...)."""


class TrackingError(MusicflowError):
    """The MLflow store or server cannot be used (unreachable, half-migrated, ...)."""


class UsageError(MusicflowError):
    """A command line that cannot work (exit code 2), found after argparse."""
