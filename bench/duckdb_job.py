"""The DuckDB peer: one table from PostgreSQL to one zstd Parquet file through the postgres extension.

Runs as a script under the separate virtual environment that holds ``duckdb`` and the
``duckdb-extension-postgres-scanner`` wheel (the extension cannot be downloaded from inside DuckDB
offline), so it imports nothing from bench or bulkmig.  The connection comes from the PG* environment
variables, which the extension's libpq reads, so no password is on the command line.

    python duckdb_job.py TABLE OUT.parquet
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import duckdb_extension_postgres_scanner as ext


def extension_file() -> Path:
    found = sorted(Path(ext.__file__).parent.rglob("postgres_scanner.duckdb_extension"))
    if not found:
        raise SystemExit("duckdb-extension-postgres-scanner holds no postgres_scanner.duckdb_extension")
    return found[-1]


def main() -> int:
    table, out = sys.argv[1], sys.argv[2]
    con = duckdb.connect()
    con.execute(f"LOAD '{extension_file()}'")
    con.execute("ATTACH '' AS pg (TYPE postgres, READ_ONLY)")
    con.execute(f"COPY (SELECT * FROM pg.public.{table}) TO '{out}' (FORMAT parquet, COMPRESSION zstd)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
