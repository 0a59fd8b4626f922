"""target layer (see ../shared/docs/DESIGN.md)."""
