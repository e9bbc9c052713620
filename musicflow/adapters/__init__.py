"""The adapters: every conversation with something outside the process's memory.

Offers files written atomically (``atomic``), process owners (``procs``), where state lives
(``workspace``: every path of a dataset in its ``DatasetFolder``, the source-folder check),
the dataset store (``store``: shards, manifest, ``dataset.json``, its lock and
version history) and the parse cache (``parse_cache``), cached task results (``results``),
code and data lineage (``lineage``), the workspace's Prefect server (``prefect_server``),
MLflow (``tracking``), Great Expectations (``gx``, ``data_docs``, ``data_docs_offline`` with
its ``vendor/`` files), audio previews (``audio``), TensorFlow's quiet import (``tflog``) and
its devices (``accelerate``).

May import: ``musicflow.core``, ``musicflow.terminal``, other adapters, and the libraries
they adapt. Never ``musicflow.pages``, tasks, flows or the command line.
"""
