"""ManualCompaction, GetCompactionState and GetCompactionStateWithPlans through the real pymilvus
client, over the memory fakes: the request goes on the segments topic, the state follows the
compactor's answer there."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pymilvus import MilvusClient, MilvusException

from schemas.segments import CompactionRequested, SegmentsCompacted, decode_announcement
from schemas.topics import segments_topic
from tests.memory import RunningGateway, running_gateway
from walvus.log import LogMessage


@pytest.fixture(scope="module")
def gw() -> Iterator[RunningGateway]:
    with running_gateway() as gw:
        yield gw


def _requests(gw: RunningGateway) -> list[CompactionRequested]:
    topic = segments_topic(gw.walvus.ns)
    anns = [decode_announcement(m.value) for m in gw.log.messages if m.topic == topic and m.value]
    return [a for a in anns if isinstance(a, CompactionRequested)]


def test_compact_is_executing_until_the_compactor_answers(client: MilvusClient, gw: RunningGateway) -> None:
    client.create_collection("comp", dimension=4)
    cid = client.compact("comp", is_l0=True)  # L0 (deletes into rows) is what walvus does anyway
    (req,) = [r for r in _requests(gw) if r.compaction_id == cid]
    assert req.collection == "comp" and req.collection_id == gw.walvus.catalog.require("comp").collection_id
    assert client.get_compaction_state(cid) == "Executing"
    done = SegmentsCompacted(
        req.collection_id, "comp", cid, [1, 2, 3], [[9, 0, 10]], {"0": 5}, 4, [[[1, 2, 3], 9]]
    )
    gw.log.append([LogMessage(segments_topic(gw.walvus.ns), 0, done.to_json())])
    assert client.get_compaction_state(cid) == "Completed"
    plans = client.get_compaction_plans(cid)
    assert [(p.sources, p.target) for p in plans.plans] == [([1, 2, 3], 9)]
    assert client.get_compaction_state(cid + 1) == "UndefiedState"


def test_a_failed_compaction_completes_with_its_plan_failed(client: MilvusClient, gw: RunningGateway) -> None:
    client.create_collection("comp_fail", dimension=4)
    cid = client.compact("comp_fail")
    failed = SegmentsCompacted(0, "comp_fail", cid, [], [], {}, -1, error="StorageError: disk full")
    gw.log.append([LogMessage(segments_topic(gw.walvus.ns), 0, failed.to_json())])
    assert client.get_compaction_state(cid) == "Completed"
    (plan,) = client.get_compaction_plans(cid).plans
    assert plan.state.name == "Failed" and "disk full" in plan.failure_reason


def test_unknown_collections_and_clustering_are_refused_a_target_size_is_passed_on(
    client: MilvusClient, gw: RunningGateway
) -> None:
    client.create_collection("comp_refused", dimension=4)
    before = len(_requests(gw))
    with pytest.raises(MilvusException, match="can't find collection|not found"):
        client.compact("no_such_collection")
    with pytest.raises(MilvusException, match="clustering"):
        client.compact("comp_refused", is_clustering=True)
    assert len(_requests(gw)) == before  # nothing was asked of the compactor
    client.compact("comp_refused", target_size=64)  # MB: the bound of the segments it writes
    assert _requests(gw)[-1].target_size_mb == 64
