"""offline-fix: repair broken Windows virtual machines offline."""

__version__ = "0.1.0"
