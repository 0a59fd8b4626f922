"""faces layer: report rendering (HTML). See ../shared/docs/DESIGN.md."""
