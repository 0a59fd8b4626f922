"""signing layer (see ../shared/docs/DESIGN.md)."""
