"""Which device of a plan's several devices a volume is: ``devices/<name>/device.json``.

``plan`` writes the marker onto each device (bulkmig.fullload.devices assigns the parts); ``seal``,
``verify`` and ``import`` read it to know which parts belong on the volume in hand and where its
``volume.json`` goes in the bucket (``devices/<name>/volume.json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bulkmig.core import layout
from bulkmig.core.errors import IntegrityError
from bulkmig.core.store import NotFound, Store

DEVICE_FORMAT = "bulkmig-device"
DEVICE_VERSION = 1


def marker_bytes(volume_id: str, name: str, index: int, count: int) -> bytes:
    """``devices/<name>/device.json``: lets seal, verify and import tell which device they hold."""
    doc = {"format": DEVICE_FORMAT, "version": DEVICE_VERSION, "volume_id": volume_id}
    doc.update({"name": name, "index": index, "count": count})
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


@dataclass(frozen=True)
class DeviceId:
    """Which device of the plan's devices a volume is (``devices/<name>/device.json``)."""

    volume_id: str
    name: str
    index: int  # 1-based
    count: int

    def as_manifest(self) -> dict[str, Any]:
        return {"name": self.name, "index": self.index, "count": self.count}

    def label(self) -> str:
        return f"device {self.name} ({self.index} of {self.count})"


def device_of(store: Store) -> DeviceId | None:
    """The device ``store`` is, from its marker; None for a single volume.  Refuses a store holding two."""
    markers = [i.key for i in store.list(layout.DEVICES_DIR + "/") if i.key.endswith("/device.json")]
    if not markers:
        return None
    if len(markers) > 1:
        raise IntegrityError(
            f"{store.url} holds the markers of {len(markers)} devices ({', '.join(sorted(markers))})",
            "a device holds its own parts only: copy each device's files onto a volume of its own",
        )
    try:
        doc = json.loads(store.get_bytes(markers[0]))
        return DeviceId(str(doc["volume_id"]), str(doc["name"]), int(doc["index"]), int(doc["count"]))
    except (NotFound, ValueError, KeyError, TypeError):
        raise IntegrityError(
            f"{store.url}/{markers[0]} is damaged",
            "restore it from the plan's other copies (name, index and count of this device), or start over with "
            "`bulkmig plan --task … --restart`",
        ) from None
