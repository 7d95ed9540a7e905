"""The change stream as replay reads it: its documents and batch listing in the bucket.

Part of :mod:`bulkmig.replay`; the why of replay is in :mod:`bulkmig.replay.runner`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bulkmig.cdc.batch import Batch, list_batches, read_batch
from bulkmig.cdc.position import lsn_or_none
from bulkmig.config.task import Task
from bulkmig.core import layout
from bulkmig.core.errors import (
    ConfigError,
    IntegrityError,
    PlanError,
)
from bulkmig.core.manifest import validate_document
from bulkmig.core.store import NotFound, Store, open_store

# commit_ts: the source commit time of the last change applied, so `status` can show the lag in time
# after a restart (the other four columns are what the exactly-once guarantee needs).

STREAM_MANIFEST = layout.STREAM_DOC
PROGRESS = layout.PROGRESS_DOC


# ============================================================================================ streams


@dataclass
class Stream:
    """One change stream in the bucket: ``cdc/<stream_id>/``."""

    store: Store  # the bucket (task.bucket)
    stream_id: str

    @property
    def prefix(self) -> str:
        return layout.join("cdc", self.stream_id)

    def batches(self) -> list[int]:
        return list_batches(self.store, self.prefix)

    def read(self, seq: int) -> Batch | None:
        """The batch, or None while its batch.json is not there (a batch without it does not exist)."""
        try:
            batch = read_batch(self.store, self.prefix, seq)
        except NotFound:
            return None
        if batch.stream_id != self.stream_id or batch.seq != seq:
            raise IntegrityError(
                f"{self.store.url}/{self.prefix}/{layout.batch_dir(seq)} says it is batch {batch.seq} of stream "
                f"{batch.stream_id!r}",
                "the bucket holds a batch copied from another stream; remove it and restore the right one",
            )
        return batch

    def document(self, name: str) -> dict[str, Any] | None:
        try:
            doc = json.loads(self.store.get_bytes(layout.join(self.prefix, name)))
        except NotFound:
            return None
        if not isinstance(doc, dict):
            return None
        if name == STREAM_MANIFEST:
            validate_document(doc, "stream", f"{self.store.url}/{layout.join(self.prefix, name)}")
        return doc

    def captured_through(self) -> int | None:
        """``progress.json``'s ``captured_through``: every change committed up to it is in a batch."""
        doc = self.document(PROGRESS)
        return lsn_or_none(doc.get("captured_through")) if doc else None


def find_stream(task: Task, store: Store | None = None) -> Stream:
    """This task's change stream: the only one under ``cdc/``, or the one of the task's slot."""
    store = store or open_store(task.bucket, task.s3_options())
    ids = sorted({info.key.split("/")[1] for info in store.list("cdc/") if info.key.count("/") >= 2})
    if not ids:
        raise PlanError(
            f"{task.bucket} holds no change stream (nothing under cdc/)",
            f"start capture first: `bulkmig capture --task {task.path or 'task.yaml'}`",
        )
    if len(ids) == 1:
        return Stream(store, ids[0])
    # Several streams (an earlier, abandoned one?): the one capture names after this task's slot.
    from bulkmig.cdc.stream import stream_names
    from bulkmig.engines.postgres.capture import stream_id_for

    slot = stream_names(task)[0]
    matching = [i for i in ids if i == stream_id_for(slot)]
    if not matching:
        matching = [i for i in ids if (Stream(store, i).document(STREAM_MANIFEST) or {}).get("slot") == slot]
    if len(matching) == 1:
        return Stream(store, matching[0])
    raise ConfigError(
        f"{task.bucket} holds {len(ids)} change streams ({', '.join(ids)}) and none is the stream of slot {slot!r}",
        "set settings.slot_name in the task to the slot of the stream to replay",
    )
