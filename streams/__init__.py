"""Faust agents that turn the WAL into Delta Lake segments, and the ingest topic's validator."""
