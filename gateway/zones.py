"""The time zone a request's TIMESTAMPTZ values are read and written in.

Milvus's order: the request's ``timezone`` param, the collection's ``timezone`` property, the
database's ``timezone`` property, then UTC.
"""

from __future__ import annotations

from schemas.catalog import CollectionInfo
from schemas.timestamptz import PROPERTY, zone_of
from walvus.write_api import WriteApi


def request_zone(walvus: WriteApi, info: CollectionInfo, requested: str | None = None) -> str:
    db = walvus.catalog.database(info.db_name)
    db_zone = db.properties.get(PROPERTY) if db is not None else None
    return zone_of(requested, info.properties.get(PROPERTY), db_zone)
