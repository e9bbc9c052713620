"""The models musicflow knows and what ``generate`` can direct in each.

Kept in the core (no TensorFlow, no Keras) so that every layer can name the models: the
command line checks ``--model`` and ``generate``'s options against it before anything is
loaded, and the tracking adapter tells a dataset's registered models from other names.
``models/`` builds them (``musicflow.models.build_model``).
"""

from __future__ import annotations

#: ``rnn``, ``vae``, ``gan``: this project's sequence-aware models (an autoregressive LSTM over
#: frames, a VAE over its decoder, a GAN in that VAE's code space); ``vae-thesis``,
#: ``gan-thesis``: faithful reproductions of the seed thesis, for comparison (docs/models.md).
MODEL_NAMES = ("rnn", "vae", "gan", "vae-thesis", "gan-thesis")

#: The models that play a dataset's tracks jointly (``--tracks voices|instruments``,
#: docs/models.md "Tracks"); the thesis twins take merged rolls only.
TRACKED_MODELS = frozenset({"rnn", "vae", "gan"})

#: What ``musicflow generate`` can direct in each model beyond -n, --seed, --bars, --tempo and
#: --program (those apply to every model): a prompt to continue, two pieces to interpolate,
#: the sampling temperature, the key (the frame models condition on the tonic).
DIRECTABLE: dict[str, frozenset[str]] = {
    "rnn": frozenset({"prompt", "temperature", "key"}),
    "vae": frozenset({"prompt", "interpolate", "temperature", "key"}),
    "gan": frozenset({"prompt", "interpolate", "temperature", "key"}),
}

#: Most bars of a prompt the frame models read (``--prompt-bars``' default and limit).
PROMPT_CONTEXT_BARS = 16
