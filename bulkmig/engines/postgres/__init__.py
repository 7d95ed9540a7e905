"""PostgreSQL: catalog reflection, snapshot reads, COPY writes, and the schema through pg_dump's sections."""
