"""`bulkmig replay`: the captured change batches applied to the target, exactly once, in bulk.

- :mod:`~bulkmig.replay.compact`: a table's changes in one batch folded to set-based steps (pure);
- :mod:`~bulkmig.replay.target`: the target table as it is now (columns, key);
- :mod:`~bulkmig.replay.stream`: the stream's documents and batches as replay reads them;
- :mod:`~bulkmig.replay.marks`: MySQL snapshot marks from the imported volume's sidecars;
- :mod:`~bulkmig.replay.apply`: one batch applied in one target transaction;
- :mod:`~bulkmig.replay.runner`: the loop, its lock, gap checks and the ``bulkmig.replay_position`` ledger.
"""

from __future__ import annotations

from bulkmig.replay.runner import ReplayReport, replay, replay_status, source_position

__all__ = ["ReplayReport", "replay", "replay_status", "source_position"]
