"""Settings of the CDC service (``walvus cdc serve``) and its client (``walvus cdc create ...``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from walvus.settings import WalvusSettings


class CdcSettings(WalvusSettings):
    cdc_host: str = Field("127.0.0.1", description="Address the CDC task API binds.")
    cdc_port: int = Field(9420, description="Port of the CDC task API (HTTP+JSON, also serves /metrics).")
    cdc_metrics_port: int = Field(
        0, description="An extra Prometheus-only port; 0: /metrics on the API port only."
    )
    cdc_url: str | None = Field(
        None, description="Task API the CLI talks to. Default: http://cdc_host:cdc_port."
    )
    cdc_task_file: Path | None = Field(
        None, description="Task store (JSON). Default: data_dir/cdc/tasks.json."
    )
    cdc_batch_records: int = Field(2000, description="Most source records in one target transaction.")
    cdc_batch_bytes: int = Field(32 << 20, description="Most bytes in one target transaction.")
    cdc_poll_seconds: float = Field(0.05, description="How long an idle replicator waits for source records.")
    cdc_connect_timeout_seconds: float = Field(5.0, description="Reachability check of a cluster on create.")
    cdc_transaction_timeout_ms: int = Field(
        30_000, description="transaction.timeout.ms of the target producer: bounds a crashed task's open txn."
    )
    cdc_lag_interval_seconds: float = Field(1.0, description="How often each task measures its lag.")
    cdc_retry_seconds: float = Field(2.0, description="Back-off before a failed task session restarts.")

    @property
    def task_file(self) -> Path:
        return self.cdc_task_file or self.data_dir / "cdc" / "tasks.json"

    @property
    def url(self) -> str:
        return self.cdc_url or f"http://{self.cdc_host}:{self.cdc_port}"
