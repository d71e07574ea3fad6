"""``walvus inspect``: segments, lag and storage of collections (in the spirit of Birdwatcher)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("inspect", help="show segments, lag, storage usage and snapshots")
    p.add_argument("what", choices=["collections", "segments", "lag", "storage", "snapshots"])
    p.add_argument("collection", nargs="?")
    p.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    from walvus.inspection import report

    print(report(args.what, args.collection))
    return 0
