"""The defaults a user can override on the command line, each stated once.

Light on purpose (no imports): the CLI reads them while building ``--help``. The encoding's own
defaults (the grid and the pitch window) belong to the encoding, :mod:`musicflow.core.roll`;
the model names to :mod:`musicflow.core.catalog` (``MODEL_NAMES``).
"""

#: The embedded dataset ``musicflow run`` uses without a SOURCE: the Bach chorales bundled with
#: music21, exported to MIDI on first use.
DEFAULT_DATASET = "bach-chorales"

#: Files larger than this are quarantined ``too_large`` without being read: far above any real
#: MIDI file, it protects memory, not correctness.
DEFAULT_MAX_BYTES = 64 * 2**20

#: Parallel parse workers (chunks of files fan out over the flow's task runner).
DEFAULT_WORKERS = 2

#: The models ``musicflow run``, ``serve`` and ``deploy`` train when not told: the two that came
#: closest to held-out music at every budget measured (docs/models.md); ``gan`` did not.
DEFAULT_MODELS = ("rnn", "vae")

#: When ``musicflow serve`` and ``musicflow deploy`` retrain when not told: daily at 03:00 (UTC,
#: the Prefect server's default timezone).
DEFAULT_CRON = "0 3 * * *"

#: ``musicflow watch`` reads the folder after this many seconds with no file event and no MIDI
#: file growing (``--settle``): long enough for a copy to show it is still running.
DEFAULT_SETTLE_S = 2.0

#: Most parallel parse workers a command accepts (each holds one file's notes in memory).
MAX_WORKERS = 64

#: Flow commands refuse to start with less free space than this on the workspace's disk
#: (``MUSICFLOW_MIN_FREE_MB`` overrides): the Prefect database, the manifest and the shards
#: need room, and failing before anything is written is better than failing half-way.
DEFAULT_MIN_FREE_MB = 64

#: Windows per generated piece: 8 windows of two 4/4 bars = 16 bars. ``musicflow generate``
#: writes pieces of this length, and evaluation scores the windows of such pieces.
PIECE_WINDOWS = 8

#: Tempo of a generated piece without --tempo (and without a prompt that sets one), in BPM.
DEFAULT_TEMPO_BPM = 100
