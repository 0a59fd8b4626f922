"""hive layer (see ../shared/docs/DESIGN.md)."""
