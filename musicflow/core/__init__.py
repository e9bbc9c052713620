"""The pure core: the maths and the rules, tested on hand-made arrays.

Offers the MIDI reader (``midi``, its C extension ``_smf``; ``scan``: a file's record and
windows), the roll encoding (``roll``) and the models' frames (``frames``), the validation
policy (``suite``), the metrics (``metrics``; per track and between tracks:
``track_metrics``), calibration and binarisation (``sampling``), the champion rule
(``champion``), a dataset version's statistics and drift (``history``), generate's prompts and
keys (``compose``), file names as shown (``names``), the command line's defaults
(``defaults``), the training settings (``settings``), the error types (``errors``) and
synthetic MIDI (``synth``).

May import: other ``musicflow.core`` modules, the standard library, numpy and pandas. Never
Prefect, MLflow, Great Expectations or TensorFlow, and nothing else of musicflow.
"""
