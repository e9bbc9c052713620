"""musicflow: train music generators on your own MIDI collection.

Dependency direction: ``cli`` → ``flows`` → ``tasks`` → adapters (``tracking``, ``gx``,
``prefect_server``, ``workspace``) → pure core (``midi``, ``roll``, ``metrics``, ``sampling``) and
``models``; never back. docs/architecture.md says which module owns which fact.
"""

__version__ = "0.1.0"
