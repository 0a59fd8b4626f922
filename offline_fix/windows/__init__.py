"""windows layer (see ../shared/docs/DESIGN.md)."""
