"""Data layer: synthetic MPD, ingest to Parquet, and the evaluation splits."""
