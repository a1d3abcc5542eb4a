"""The Headcount collector: strict ingest of coarse counts, hourly storage, suppressed queries."""

__version__ = "0.1.0"

__all__ = ["__version__"]
