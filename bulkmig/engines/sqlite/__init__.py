"""SQLite as a source: the declared-type map to PostgreSQL (``types``), per-value conformance (``values``),
the CREATE statements' text (``sqltext``), catalog reflection (``reflect``), the read-only file
(``connect``) and reads of one consistent state of it (``source``).  The driver is the standard library's
``sqlite3``."""
