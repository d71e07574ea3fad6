"""Benchmarks: printed tables and plots, never timed tests."""
