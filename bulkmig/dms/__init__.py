"""The AWS DMS S3 target format, both ways: a way out of DMS and a way to keep what was built on it.

- :mod:`~bulkmig.dms.settings`: the DMS S3 endpoint settings JSON (``S3Settings``), read unchanged;
- :mod:`~bulkmig.dms.tables`: the DMS external table definition, Parquet schemas, DDL for new tables;
- :mod:`~bulkmig.dms.values`: values between bulkmig's forms and DMS's (Arrow types, PostgreSQL text, CSV);
- :mod:`~bulkmig.dms.read`: a ``dms-s3://bucket/folder`` source: the folder, its files, and its full-load files
  into the target with the load ledger, each exactly once;
- :mod:`~bulkmig.dms.changes`: then its CDC files in order through replay, each exactly once;
- :mod:`~bulkmig.dms.write`: ``bulkmig export --format dms``: an imported volume and the change batches
  written as DMS's S3 target would have written them.

Paths are :mod:`bulkmig.core.layout`'s (its DMS section).  The layer sits above replay (it reuses replay's
runner and the load ledger) and below ops and the command line.
"""
