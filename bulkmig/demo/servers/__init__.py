"""Throwaway real servers for the tests, ``make demo`` and ``make bench``.

bulkmig is tested against real parts (DESIGN §7), never against mocks of a driver: a PostgreSQL cluster
started with ``initdb``/``pg_ctl`` in a temp directory, and moto's S3 server speaking real HTTP on
loopback.  Both live only as long as the object that started them, listen only on 127.0.0.1 and pick a
free port, so several test sessions (or engineers) can share one machine.

Example::

    with PostgresServer() as pg, MotoS3Server() as s3:
        pg.create_database("src")
        load_dataset(pg, "pagila", "src")
        s3.create_bucket("staging")
        print(pg.url("src"), s3.endpoint_url)

The servers, one module each: :mod:`.postgres`, :mod:`.moto` (S3), :mod:`.mariadb`; what they share in
:mod:`.common`; the sample datasets in :mod:`.datasets`.  Import from here.
"""

from bulkmig.demo.servers.common import DevServerError, datasets_dir, free_port, repo_root
from bulkmig.demo.servers.datasets import MYSQL_DATASETS, PG_DATASETS, load_dataset
from bulkmig.demo.servers.mariadb import MariaDBServer, find_mariadbd
from bulkmig.demo.servers.moto import MotoS3Server
from bulkmig.demo.servers.postgres import DEFAULT_PG_SETTINGS, PostgresServer, find_pg_bindir

__all__ = [
    "DEFAULT_PG_SETTINGS",
    "MYSQL_DATASETS",
    "PG_DATASETS",
    "DevServerError",
    "MariaDBServer",
    "MotoS3Server",
    "PostgresServer",
    "datasets_dir",
    "find_mariadbd",
    "find_pg_bindir",
    "free_port",
    "load_dataset",
    "repo_root",
]
