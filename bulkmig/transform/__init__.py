"""The DMS transformation actions that change data, not only names: ``add-column`` (SQLite expressions),
``change-data-type``, ``define-primary-key``, tablespace renames and the data-masking actions.

One module per concern: :mod:`.parser` reads a DMS (SQLite) expression, :mod:`.expressions` compiles it
into a function over Arrow batches, :mod:`.masking` masks columns, :mod:`.plan` decides per table what
applies (stored in the plan, so every agent does the same), :mod:`.apply` runs it on extract's batches and
:mod:`.target` writes the target DDL the rules ask for.
"""
