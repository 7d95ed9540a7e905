"""`bulkmig replay`: the captured change batches applied to the target, exactly once, in bulk.

- :mod:`~bulkmig.replay.net`: a keyed table's changes in one batch folded to one net change per key,
  column-wise with pyarrow and numpy (pure; what the set-based apply uses);
- :mod:`~bulkmig.replay.compact`: the row-wise steps (key-less tables; key lookups of the one-by-one path);
- :mod:`~bulkmig.replay.target`: the target table as it is now (columns, key);
- :mod:`~bulkmig.replay.stream`: the stream's documents and batches as replay reads them;
- :mod:`~bulkmig.replay.marks`: MySQL snapshot marks from the imported volume's sidecars;
- :mod:`~bulkmig.replay.apply`: one batch applied in one target transaction;
- :mod:`~bulkmig.replay.runner`: the loop, its lock, gap checks and the ``bulkmig.replay_position`` ledger.
"""

from __future__ import annotations

from bulkmig.replay.runner import ReplayReport, replay, replay_status, source_position

__all__ = ["ReplayReport", "replay", "replay_status", "source_position"]
