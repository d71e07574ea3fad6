"""Index build progress, as DescribeIndex reports it."""

from indexer.segments import index_progress

__all__ = ["index_progress"]
