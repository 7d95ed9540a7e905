"""bulkmig: move live databases over thin networks through a shipped Parquet volume, S3 and CDC replay."""

__version__ = "0.1.0"
