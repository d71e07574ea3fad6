"""The single error type raised for malformed or ill-typed filter expressions."""

from __future__ import annotations


class FilterError(ValueError):
    """A filter expression could not be parsed, typed or evaluated.

    ``expr`` is the offending expression, ``reason`` the bare explanation and ``column``
    the 1-based column the problem was found at (``None`` where it is not local).
    """

    def __init__(self, expr: str, reason: str, column: int | None = None) -> None:
        self.expr = expr
        self.reason = reason
        self.column = column
        super().__init__(f"invalid filter '{expr}': {reason}")

    def __reduce__(self):  # keep the three fields across pickling
        return (type(self), (self.expr, self.reason, self.column))
