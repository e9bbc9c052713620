"""musicflow: train music generators on your own MIDI collection.

Dependency direction: ``cli`` → ``flows`` → ``tasks`` → pure core (``midi``, ``roll``,
``metrics``, ``sampling``) and ``models``; never back.
"""

__version__ = "0.1.0"
