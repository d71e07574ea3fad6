"""Errors raised by the local Kafka launcher."""

from __future__ import annotations

from schemas.exceptions import WalvusError


class KafkaLauncherError(WalvusError, RuntimeError):
    """The local Kafka broker could not be resolved, formatted, started or stopped."""
