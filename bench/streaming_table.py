"""The README's streaming table: one row per target, phase and consistency level, from
``bench/results/streaming.json`` (``python -m bench.streaming_table [path]``).

Per row: static QPS of the same client count, QPS over the phase's windows (mean and worst, and
the worst as a fraction of static), worst p99 latency, lowest recall@10, growing rows and RSS at
their highest, freshness p99 at its worst.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.harness import RESULTS


def _num(v: float | None, fmt: str = "{:,.0f}") -> str:
    return "–" if v is None else fmt.format(v)


def rows(data: dict[str, Any]) -> list[list[str]]:
    out = []
    for t in data["targets"]:
        windows = t.get("windows") or []
        static = {
            (w["clients"], w["consistency"]): w["qps"] for w in windows if w["phase"] == "static"
        }  # the last static window per client count and level
        groups: dict[tuple[int, int, str], list[dict[str, Any]]] = {}
        for w in windows:
            if w["phase"] != "static":
                groups.setdefault((w["rate"], w["clients"], w["consistency"]), []).append(w)
        for (rate, clients, level), ws in groups.items():
            qps = [w["qps"] for w in ws]
            base = static.get((clients, level))
            fresh = [w["fresh_p99_ms"] for w in ws if w.get("fresh_p99_ms") is not None]
            recall = [w["recall_at_10"] for w in ws if w.get("recall_at_10") is not None]
            growing = [w["growing_rows"] for w in ws if w.get("growing_rows") is not None]
            out.append(
                [
                    t["target"],
                    level,
                    f"{rate:,}",
                    str(clients),
                    _num(base),
                    _num(sum(qps) / len(qps)),
                    _num(min(qps)),
                    _num(min(qps) / base, "{:.2f}") if base else "–",
                    _num(max(w["p99_ms"] for w in ws), "{:.1f}"),
                    _num(min(recall), "{:.3f}") if recall else "–",
                    _num(max(growing)) if growing else "–",
                    _num(max(w["rss_mb"] for w in ws)),
                    _num(max(fresh), "{:.0f}") if fresh else "–",
                ]
            )
    return out


HEADER = [
    "target",
    "level",
    "rows/s",
    "clients",
    "static QPS",
    "QPS mean",
    "QPS worst window",
    "worst / static",
    "p99 ms worst",
    "recall@10 lowest",
    "growing rows max",
    "RSS MB max",
    "freshness p99 ms worst",
]


def markdown(data: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(data)]
    return "\n".join(lines)


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS / "streaming.json"
    print(markdown(json.loads(path.read_text())["data"]))


if __name__ == "__main__":
    main()
