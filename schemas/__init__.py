"""What travels on the log and what is stored: collection schemas, WAL records, catalog state.

This package depends on nothing else in walvus. See ``FORMAT.md`` for the wire formats.
"""
