"""`bulkmig convert`: read the source's catalog, convert it, write the DDL and the assessment report."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bulkmig.convert.converter import Conversion
from bulkmig.core.catalog import ACTION, CHANGED, CONVERTED, Catalog

# ------------------------------------------------------------------------------------------ the command

OUTPUT_FILES = ("pre-data.sql", "post-data.sql", "assessment.md", "assessment.json")


def reflect_source(task: Any) -> Catalog:
    """Read the source's catalog for ``bulkmig convert`` (read-only; no snapshot lock is needed for a report).

    MySQL is read with one plain connection; SQLite through its engine's ``open_catalog``.  A PostgreSQL
    source is refused: PG → PG copies the schema with pg_dump and needs no conversion.
    """
    engine = task.source.engine
    if engine == "mysql":
        from bulkmig.engines.mysql import connect as my
        from bulkmig.engines.mysql.reflect import reflect
        from bulkmig.engines.mysql.source import scan_catalog

        conn = my.connect(task.source)
        try:
            catalog = reflect(conn, task.source.database, task.settings.mysql)
            scan_catalog(conn, catalog, task)  # zero dates and refused values, counted per column
            return catalog
        finally:
            conn.close()
    if engine == "postgresql":
        from bulkmig.core.errors import ConfigError

        raise ConfigError(
            "convert is for MySQL/MariaDB and SQLite sources; a PostgreSQL source keeps its schema (pg_dump)",
            "run plan directly",
        )
    from bulkmig.engines import foreign_source

    module = foreign_source(engine)
    assert module is not None
    catalog, _position = module.open_catalog(task)
    return catalog


def write_outputs(conversion: Conversion, out: Path) -> list[Path]:
    """The four files of ``bulkmig convert`` in ``out`` (created if needed), each written whole or not at all."""
    out.mkdir(parents=True, exist_ok=True)
    texts = {
        "pre-data.sql": conversion.pre_data_sql,
        "post-data.sql": conversion.post_data_sql,
        "assessment.md": conversion.render_markdown(),
        "assessment.json": json.dumps(conversion.report, indent=1, ensure_ascii=False) + "\n",
    }
    paths = []
    for name in OUTPUT_FILES:
        path = out / name
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(texts[name], encoding="utf-8")
        os.replace(tmp, path)
        paths.append(path)
    return paths


def summary_lines(conversion: Conversion) -> list[str]:
    """What ``bulkmig convert`` prints: counts per status, per kind, and a line on what needs action."""
    s = conversion.report["summary"]
    bs = s["by_status"]
    lines = [
        f"convert: {s['total']} objects: {bs[CONVERTED]} converted, {bs[CHANGED]} converted with changes, "
        f"{bs[ACTION]} need action"
    ]
    for kind, counts in s["by_kind"].items():
        if counts["total"]:
            lines.append(
                f"  {kind.replace('_', ' '):<12} {counts['total']:>5}: {counts[CONVERTED]} converted, "
                f"{counts[CHANGED]} with changes, {counts[ACTION]} need action"
            )
    return lines
