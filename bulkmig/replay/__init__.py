"""`bulkmig replay`: the captured change batches applied to the target, exactly once, in bulk.

- :mod:`~bulkmig.replay.stream`: the stream's documents and batches as replay reads them;
- :mod:`~bulkmig.replay.marks`: MySQL snapshot marks from the imported volume's sidecars;
- :mod:`~bulkmig.replay.runner`: the loop for every target: modes, gap checks, reconnects, snapshot marks, lag.

Each target engine's side of a session (its lock, the ``bulkmig.replay_position`` ledger, each batch in one
transaction with its position, the statements) is the engine's: ``engines/postgres/target/replay.py`` (the batch
applied: ``apply.py``; its schema changes: ``drift.py``; the target table as it is now: ``tables.py``),
``engines/mysql/target/apply.py``.  The compaction is the change stream's (``bulkmig.cdc.net`` column-wise,
``bulkmig.cdc.compact`` row-wise).
"""

from __future__ import annotations

from bulkmig.replay.runner import ReplayReport, replay, replay_status, source_position

__all__ = ["ReplayReport", "replay", "replay_status", "source_position"]
