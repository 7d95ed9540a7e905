"""bulkmig: move live databases over thin networks through a shipped Parquet volume, S3 and CDC replay.

Comments cite the design as "DESIGN §N": the numbered sections of docs/design.md in the repository.
"""

__version__ = "0.1.0"
