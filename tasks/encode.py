"""Encode: accepted files' cached windows → Parquet shards, manifest and dataset digest.

The dataset store (``musicflow/adapters/store.py``) does the work and owns the commit protocol;
this module makes its write a Prefect task of the dataset flow.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from musicflow.adapters.store import write_dataset

write_shards = task(name="write-shards", cache_policy=NONE, persist_result=False)(write_dataset)
