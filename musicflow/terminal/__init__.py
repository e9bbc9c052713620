"""What a command shows on the terminal.

Offers ``progress`` (stage headers, progress bars and notes on stderr, ``--debug``'s reach)
and ``console`` (the text and ``--json`` documents a command prints on stdout).

May import: ``musicflow.core`` and rich. Used by every layer above it (tasks report their
progress), so it knows nothing of Prefect, MLflow, GX or TensorFlow.
"""
