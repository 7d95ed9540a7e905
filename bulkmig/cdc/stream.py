"""The change stream in the bucket, whatever the source engine: its names, ``stream.json`` and ``progress.json``.

::

    <bucket prefix>/cdc/<stream id>/stream.json              written once when the stream starts
    <bucket prefix>/cdc/<stream id>/progress.json            rewritten: captured_through, last batch, lag
    <bucket prefix>/cdc/<stream id>/batch-000000000001/…     change batches (``bulkmig.cdc.batch``)

Capture writes these documents and replay, status and cutover read them; each engine's capture driver
(``engines/<engine>/capture.py``) adds its own fields to ``stream.json`` but reads and writes it only here.
"""

from __future__ import annotations

import re
from typing import Any

from bulkmig.cdc.batch import list_batches, read_manifest
from bulkmig.config.task import Task
from bulkmig.core import layout
from bulkmig.core.errors import ConfigError, SourceError
from bulkmig.core.manifest import check_format, dump_document, load_document, validate_document
from bulkmig.core.store import AlreadyExists, NotFound, Store, open_store

STREAM_FORMAT = "bulkmig-stream"
STREAM_VERSION = 1
STREAM_DOC = layout.STREAM_DOC
PROGRESS_FORMAT = "bulkmig-stream-progress"
PROGRESS_VERSION = 1
PROGRESS_DOC = layout.PROGRESS_DOC
FIRST_SEQ = 1
_NAME_JUNK = re.compile(r"[^a-z0-9_]+")


def default_stream_name(task: Task) -> str:
    """``bulkmig_<task name>`` folded to what a slot name may hold (lower-case letters, digits, ``_``)."""
    base = _NAME_JUNK.sub("_", task.name.lower()).strip("_") or "task"
    return f"bulkmig_{base}"[:63]


def stream_names(task: Task) -> tuple[str, str]:
    """(slot name, publication name): the task's settings, else ``bulkmig_<task name>`` for both."""
    default = default_stream_name(task)
    return task.settings.slot_name or default, task.settings.publication_name or default


def stream_prefix(stream_id: str) -> str:
    """``cdc/pg-bulkmig_shop``: the stream's keys relative to the bucket store (which is rooted at its prefix)."""
    return layout.bucket_cdc_prefix("", stream_id)


def bucket_store(task: Task) -> Store:
    return open_store(task.bucket, task.s3_options())


def _read_doc(store: Store, stream_id: str, name: str, fmt: str, version: int) -> dict[str, Any] | None:
    key = layout.join(stream_prefix(stream_id), name)
    try:
        data = store.get_bytes(key)
    except NotFound:
        return None
    doc = load_document(data, f"{store.url}/{key}")
    check_format(doc, fmt, version, f"{store.url}/{key}")
    if name == STREAM_DOC:
        validate_document(doc, "stream", f"{store.url}/{key}")
    return doc


def create_stream(store: Store, doc: dict[str, Any]) -> None:
    """Write a new stream's ``stream.json`` (checked against its schema), never over one: a ``stream.json``
    already there means another plan started this stream meanwhile, and the stream keeps that one's start."""
    key = layout.join(stream_prefix(doc["stream_id"]), STREAM_DOC)
    validate_document(doc, "stream", key)
    try:
        store.put_bytes(key, dump_document(doc), if_absent=True)
    except AlreadyExists:
        raise SourceError(
            f"change stream {doc['stream_id']} was started by someone else meanwhile ({store.url}/{key})",
            "run plan once per task; set settings.slot_name to start another stream",
        ) from None


def read_stream(store: Store, stream_id: str) -> dict[str, Any] | None:
    """``stream.json`` of the stream, or None when the stream was never started in this bucket."""
    return _read_doc(store, stream_id, STREAM_DOC, STREAM_FORMAT, STREAM_VERSION)


def no_stream_error(store: Store, stream_id: str, what_plan_does: str) -> ConfigError:
    """The error of a capture whose stream was never started (``what_plan_does``: how plan starts one)."""
    return ConfigError(
        f"no change stream {stream_id} in {store.url}/cdc/",
        f"start it first: bulkmig plan (full-load-and-cdc or cdc) {what_plan_does}",
    )


def read_progress(store: Store, stream_id: str) -> dict[str, Any] | None:
    """``progress.json`` of the stream, or None before capture first acknowledged anything."""
    return _read_doc(store, stream_id, PROGRESS_DOC, PROGRESS_FORMAT, PROGRESS_VERSION)


def delete_stream_objects(task: Task, stream_id: str) -> int:
    """Remove every document and batch of the stream from the bucket (``bulkmig cleanup``); returns how many."""
    store = bucket_store(task)
    objects = 0
    for info in list(store.list(stream_prefix(stream_id) + "/")):
        store.delete(info.key)
        objects += 1
    return objects


def base_status(store: Store, stream_id: str, head: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The part of ``bulkmig status`` every stream has (documents and batches in the bucket), with the
    driver's ``head`` fields after ``stream_id``; returns it with ``stream.json`` (None before the start)."""
    stream = read_stream(store, stream_id)
    progress = read_progress(store, stream_id)
    seqs = list_batches(store, stream_prefix(stream_id))
    last = read_manifest(store, stream_prefix(stream_id), seqs[-1]) if seqs else None
    status: dict[str, Any] = {
        "stream_id": stream_id,
        **head,
        "started": stream is not None,
        "start_pos": stream["start_pos"] if stream else None,
        "batches": len(seqs),
        "last_batch_seq": seqs[-1] if seqs else None,
        "last_batch_pos": last["last_pos"] if last else None,
        "captured_through": progress["captured_through"] if progress else (stream or {}).get("start_pos"),
        "progress_updated_at": progress["updated_at"] if progress else None,
    }
    return status, stream
