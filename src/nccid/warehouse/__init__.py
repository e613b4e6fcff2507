"""Warehouse: object storage layout, training/validation split and the Parquet catalogue."""
