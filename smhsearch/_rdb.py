"""Optuna's SQLAlchemy storage, pickled without its password.

Ray Tune pickles its Tuner and searcher (and with them the study's storage) into the run
folder's ``ray/``; Optuna's own storage keeps its URL, password included, in that pickle. A
resume never reads those pickles (it reopens the study from the storage), so the copy they
hold carries the URL redacted.
"""

from __future__ import annotations

import optuna

from ._redact import redact


class RDBStorage(optuna.storages.RDBStorage):
    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["url"] = redact(state["url"])
        return state
