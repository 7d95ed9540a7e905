"""The shared sample datasets, loaded into a throwaway server by their own upstream loader (load.sh)."""

from __future__ import annotations

import os
import subprocess
from typing import TYPE_CHECKING

from psycopg import sql

if TYPE_CHECKING:
    pass


from bulkmig.demo.servers.common import DevServerError, datasets_dir
from bulkmig.demo.servers.mariadb import MariaDBServer
from bulkmig.demo.servers.postgres import PostgresServer

# Datasets load.sh can put into PostgreSQL, and the database each one creates when it does not take
# PAGILA_DB (the chinook scripts create their database themselves).
PG_DATASETS: dict[str, str | None] = {
    "pagila": None,
    "chinook-postgres": "chinook",
    "chinook-postgres-serial": "chinook_serial",
    "chinook-postgres-identity": "chinook_auto_increment",
}


# Datasets load.sh can put into MySQL/MariaDB, and the database each one's script creates.
MYSQL_DATASETS: dict[str, str] = {
    "sakila-mysql": "sakila",
    "chinook-mysql": "Chinook",
    "chinook-mysql-autoinc": "Chinook_AutoIncrement",
}


def load_dataset(server: PostgresServer | MariaDBServer, dataset: str, dbname: str) -> str:
    """Load a shared sample dataset into ``dbname`` (dropped and recreated) with the upstream loader.

    Runs ``load.sh`` rather than re-implementing it so row counts are checked the same way everywhere.
    The chinook scripts always create their own database name; it is renamed to ``dbname`` afterwards,
    so do not load the same chinook variant into one cluster from two places at once.
    MySQL datasets (:data:`MYSQL_DATASETS`) go to a :class:`MariaDBServer`; see :func:`_load_mysql_dataset`.
    Returns load.sh's report (per-table row counts).
    """
    if isinstance(server, MariaDBServer):
        return _load_mysql_dataset(server, dataset, dbname)
    if dataset not in PG_DATASETS:
        raise ValueError(f"not a PostgreSQL dataset: {dataset!r} (choose from {', '.join(PG_DATASETS)})")
    done = _run_load_sh(dataset, {**os.environ, **server.env(), "PAGILA_DB": dbname, "PSQL": server._exe("psql")})
    created = PG_DATASETS[dataset]
    if created is not None and created != dbname:
        server.drop_database(dbname)
        server.execute(
            "postgres",
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(created), sql.Identifier(dbname)),
        )
    return done.stdout + done.stderr


def _load_mysql_dataset(server: MariaDBServer, dataset: str, dbname: str) -> str:
    """load.sh over TCP as the server's password user, with the server's own client.

    MySQL has no RENAME DATABASE, and RENAME TABLE cannot carry triggers, views or routines to another
    database, so a dataset lands in the database its script creates and ``dbname`` must name it: asking
    for another name is refused instead of handing back a half-moved copy.
    """
    if dataset not in MYSQL_DATASETS:
        raise ValueError(f"not a MySQL dataset: {dataset!r} (choose from {', '.join(MYSQL_DATASETS)})")
    created = MYSQL_DATASETS[dataset]
    if dbname != created:
        raise ValueError(
            f"{dataset} always loads into database {created!r} (MySQL cannot rename a database with its "
            f"views, triggers and routines); pass dbname={created!r}"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYSQL")}
    env.update(server.env(), MYSQL=server._tool("mariadb", "mysql"))
    done = _run_load_sh(dataset, env)
    return done.stdout + done.stderr


def _run_load_sh(dataset: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The shared datasets' own loader, ``load.sh <dataset>``, with the server's client and credentials in ``env``."""
    root = datasets_dir()
    if root is None:
        raise DevServerError(
            "the shared sample datasets are not there",
            "set BULKMIG_DATASETS to the folder holding load.sh, or put it in ../shared/datasets",
        )
    done = subprocess.run(
        ["bash", str(root / "load.sh"), dataset], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise DevServerError(
            f"load.sh {dataset} failed (exit {done.returncode}):\n{done.stderr[-4000:]}{done.stdout[-2000:]}",
            "see the loader output above",
        )
    return done
