"""CDC: replicate a walvus site's catalog and WAL topics into another site's Kafka, exactly once.

See ``cdc/README.md`` (design, task API, guarantees) and ``cdc/RUNBOOK.md`` (failover).
"""
