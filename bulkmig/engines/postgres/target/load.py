"""One part into a PostgreSQL target: COPY (binary where every column has an exact binary form, else CSV) in one
transaction with the part's ledger row, under an advisory lock on the part (:mod:`.ledger`).

Every part's sha256 is checked against the sealed volume manifest before a single row of it is sent, and a part
whose rows differ in number from its manifest is rolled back and named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bulkmig.core import layout
from bulkmig.core.crypto import Key
from bulkmig.core.errors import IntegrityError
from bulkmig.core.manifest import VolumeManifest
from bulkmig.core.model import Table
from bulkmig.core.parquet import open_part
from bulkmig.core.store import Store
from bulkmig.engines.parts import check_sealed, sealed_entry
from bulkmig.engines.postgres import binary
from bulkmig.engines.postgres.sql import ident, qualified
from bulkmig.engines.postgres.target.ledger import claim_part, record_part
from bulkmig.engines.postgres.writer import to_copy_csv
from bulkmig.transform.plan import added_columns


def load_part(
    conn: Any,
    store: Store,
    manifest: VolumeManifest,
    plan: Any,
    table: Table,
    index: int,
    tmp: Path,
    decrypt_with: Key | None = None,
) -> int:
    """Load one part in one transaction with its ledger row.  Returns rows loaded, 0 if already loaded."""
    key = layout.part_key(table.schema, table.name, index)
    entry = sealed_entry(manifest, key)
    local = tmp / f"{abs(hash(key))}.parquet"
    store.download(key, local)
    try:
        digest = check_sealed(store, key, local, entry)
        # A PostgreSQL source's tables exist under their source names until the load renames them (renames.py).
        homogeneous = plan.source.get("engine", "postgresql") == "postgresql"
        columns = ", ".join(
            [ident(c.name if homogeneous else c.target) for c in table.copied_columns]
            + [ident(c.name) for c in added_columns(table)]  # DMS add-column rules (bulkmig.transform)
        )
        target = qualified(table.schema, table.name) if homogeneous else qualified(*table.target_qualified)
        rows = 0
        with conn.transaction():
            if claim_part(conn, plan.volume_id, key) is not None:
                return 0
            parquet = open_part(local, decrypt_with, f"{store.url}/{key}")
            # Binary COPY where every column has an exact binary form (2.5x faster: the server parses no
            # text); else CSV, which every type's text input reads exactly.
            kinds = binary.plan_columns(parquet.schema_arrow, table.copied_columns)
            fmt = "binary" if kinds is not None else "csv"
            with conn.cursor().copy(f"COPY {target} ({columns}) FROM STDIN (FORMAT {fmt})") as copy:
                if kinds is not None:
                    copy.write(binary.header())
                for group in range(parquet.num_row_groups):
                    for batch in parquet.read_row_group(group).to_batches():
                        copy.write(binary.encode_batch_view(batch, kinds) if kinds is not None else to_copy_csv(batch))
                        rows += batch.num_rows
                if kinds is not None:
                    copy.write(binary.trailer())
            if rows != entry.rows:
                raise IntegrityError(f"part {key} held {rows} rows, its manifest says {entry.rows}", "re-extract it")
            record_part(conn, plan.volume_id, key, table.schema, table.name, rows, digest, fmt)
        return rows
    finally:
        local.unlink(missing_ok=True)
