"""A small client of the task API (used by the CLI and the tests)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from cdc.exceptions import CdcError


class ApiError(CdcError):
    """The API answered with an error: ``status``, ``type`` and the server's message."""

    def __init__(self, status: int, type_: str, message: str, context: dict[str, Any] | None = None) -> None:
        super().__init__(message, status=status, type=type_, **(context or {}))
        self.status = status
        self.type = type_
        self.http_status = status


class CdcClient:
    def __init__(self, url: str, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Any:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                err = json.loads(exc.read())["error"]
            except (ValueError, KeyError, TypeError):
                raise ApiError(exc.code, "HTTPError", str(exc)) from None
            raise ApiError(
                exc.code, err.get("type", "Error"), err.get("message", ""), err.get("context")
            ) from None
        except urllib.error.URLError as exc:
            raise ApiError(
                0, "Unreachable", f"the cdc service at {self.url} did not answer: {exc.reason}"
            ) from None

    def health(self) -> dict[str, Any]:
        return self.request("GET", "/health")

    def create(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/tasks", spec)

    def list(self) -> list[dict[str, Any]]:
        return self.request("GET", "/tasks")["tasks"]

    def get(self, ref: str) -> dict[str, Any]:
        return self.request("GET", f"/tasks/{ref}")

    def positions(self, ref: str) -> dict[str, Any]:
        return self.request("GET", f"/tasks/{ref}/positions")["positions"]

    def pause(self, ref: str) -> dict[str, Any]:
        return self.request("POST", f"/tasks/{ref}/pause")

    def resume(self, ref: str) -> dict[str, Any]:
        return self.request("POST", f"/tasks/{ref}/resume")

    def delete(self, ref: str) -> dict[str, Any]:
        return self.request("DELETE", f"/tasks/{ref}")

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=self.timeout) as resp:
            return resp.read().decode()
