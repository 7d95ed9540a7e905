"""MySQL/MariaDB as a source: catalog reflection and the type map to PostgreSQL (issue 5); snapshot reads
and binlog capture (issue 6) build on these."""
