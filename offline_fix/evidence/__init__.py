"""evidence layer (see ../shared/docs/DESIGN.md)."""
