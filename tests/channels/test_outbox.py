"""The outbox: unique keys, claims no two workers share, and `sent` only by the claim's holder."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import Integer, literal, select

from kesher.campaigns.models import Campaign
from kesher.channels import outbox
from kesher.channels.models import OutboxMessage
from kesher.contacts.models import Contact
from kesher.contacts.service import save_contact

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
# Outbox rows need no campaign row; ids far above the campaigns other tests create keep them apart.
CAMPAIGN = 70_000_000
LEASE = timedelta(minutes=5)


def _fill(session, workspace, n: int, campaign_id: int) -> list[int]:
    ids = [save_contact(session, workspace.id, {"email": f"p{i}@example.com"}).contact_id for i in range(n)]
    rows = select(literal(workspace.id, Integer), literal(f"campaign:{campaign_id}:") + Contact.email,
                  literal("email"), literal(campaign_id, Integer), literal("A"), Contact.id, Contact.email,
                  literal("queued"), literal(NOW - timedelta(seconds=1), OutboxMessage.__table__.c.not_before.type)
                  ).where(Contact.id.in_(ids))
    assert outbox.enqueue(session, rows) == n
    assert outbox.enqueue(session, rows) == 0  # the same keys again: nothing new
    return ids


def test_claims_are_disjoint_and_only_the_holder_records_sent(session, workspace) -> None:
    campaign = CAMPAIGN + workspace.id
    _fill(session, workspace, 10, campaign)
    first = outbox.claim(session, campaign, "a" * 32, limit=6, lease=LEASE, now=NOW)
    second = outbox.claim(session, campaign, "b" * 32, limit=6, lease=LEASE, now=NOW)
    assert len(first) == 6 and len(second) == 4
    assert not {m.id for m in first} & {m.id for m in second}
    assert outbox.claim(session, campaign, "c" * 32, limit=6, lease=LEASE, now=NOW) == []
    # b cannot record a's messages; a can.
    assert outbox.mark_sent(session, [m.id for m in first], "b" * 32, NOW, "example.com") == set()
    done = outbox.mark_sent(session, [m.id for m in first], "a" * 32, NOW, "example.com")
    assert done == {m.id for m in first}
    row = session.get_one(OutboxMessage, first[0].id)
    session.refresh(row)
    assert row.message_id == outbox.message_id(row.id, "example.com") and row.sent_at == NOW
    assert outbox.counts(session, campaign) == {"sent": 6, "sending": 4}


def test_marked_sent_with_its_campaign_only_while_the_campaign_is_sending(session, workspace) -> None:
    campaign = Campaign(workspace_id=workspace.id, name="checked", status="paused")
    session.add(campaign)
    session.flush()
    _fill(session, workspace, 4, campaign.id)
    held = [m.id for m in outbox.claim(session, campaign.id, "a" * 32, limit=4, lease=LEASE, now=NOW)]
    assert outbox.mark_sent(session, held[:2], "a" * 32, NOW, "example.com", campaign_id=campaign.id) == set()
    campaign.status = "sending"
    session.flush()
    assert outbox.mark_sent(session, held[:2], "a" * 32, NOW, "example.com", campaign_id=campaign.id) == set(held[:2])
    assert outbox.mark_sent(session, held[2:], "b" * 32, NOW, "example.com", campaign_id=campaign.id) == set()
    assert outbox.counts(session, campaign.id) == {"sent": 2, "sending": 2}


def test_release_all_gives_back_every_claim_of_a_campaign_under_way_and_nothing_else(session, workspace) -> None:
    campaigns = {}
    for status in ("sending", "paused", "sent"):
        campaigns[status] = Campaign(workspace_id=workspace.id, name=status, status=status)
        session.add(campaigns[status])
    session.flush()
    held = {}
    for status, campaign in campaigns.items():
        _fill(session, workspace, 3, campaign.id)
        held[status] = [m.id for m in outbox.claim(session, campaign.id, "a" * 32, limit=3, lease=LEASE, now=NOW)]
        outbox.mark_sent(session, held[status][:1], "a" * 32, NOW, "example.com")
    assert outbox.release_all(session) == 4
    assert outbox.counts(session, campaigns["sending"].id) == {"sent": 1, "queued": 2}
    assert outbox.counts(session, campaigns["paused"].id) == {"sent": 1, "queued": 2}
    assert outbox.counts(session, campaigns["sent"].id) == {"sent": 1, "sending": 2}
    # The dead holder records nothing now; whoever claims them next may.
    assert outbox.mark_sent(session, held["sending"], "a" * 32, NOW, "example.com") == set()
    assert len(outbox.claim(session, campaigns["sending"].id, "b" * 32, limit=3, lease=LEASE, now=NOW)) == 2


def test_an_expired_claim_is_taken_over_and_the_old_holder_loses_it(session, workspace) -> None:
    campaign = CAMPAIGN + workspace.id
    _fill(session, workspace, 3, campaign)
    dead = outbox.claim(session, campaign, "a" * 32, limit=3, lease=LEASE, now=NOW)
    later = NOW + LEASE + timedelta(seconds=1)
    assert outbox.next_due(session, campaign) == NOW + LEASE
    taken = outbox.claim(session, campaign, "b" * 32, limit=3, lease=LEASE, now=later)
    assert {m.id for m in taken} == {m.id for m in dead}
    assert outbox.mark_sent(session, [m.id for m in dead], "a" * 32, later, "example.com") == set()


def test_release_defer_and_give_up(session, workspace) -> None:
    campaign = CAMPAIGN + workspace.id
    _fill(session, workspace, 2, campaign)
    a, b = outbox.claim(session, campaign, "a" * 32, limit=2, lease=LEASE, now=NOW)
    outbox.release(session, [a.id], "a" * 32, NOW + timedelta(seconds=30))
    assert outbox.defer(session, [b.id], "a" * 32, "454 4.7.0 throttling", NOW, base=60) == 0
    row = session.get_one(OutboxMessage, b.id)
    session.refresh(row)
    assert (row.status, row.attempts, row.not_before) == ("queued", 1, NOW + timedelta(seconds=60))
    assert outbox.backoff(2, 60) == timedelta(seconds=240)
    session.execute(OutboxMessage.__table__.update().where(OutboxMessage.id == b.id)
                    .values(attempts=outbox.MAX_ATTEMPTS - 1))
    later = NOW + timedelta(hours=7)
    claimed = outbox.claim(session, campaign, "c" * 32, limit=5, lease=LEASE, now=later)
    assert {m.id for m in claimed} == {a.id, b.id}
    assert outbox.defer(session, [b.id], "c" * 32, "454 again", later) == 1
    session.refresh(row)
    assert row.status == "failed" and "gave up" in row.error


def test_two_workers_claiming_at_once_never_share_a_message(database, workspace) -> None:
    campaign = CAMPAIGN + workspace.id
    with database.session() as session:
        _fill(session, workspace, 300, campaign)
    got: dict[str, list[int]] = {}
    barrier = threading.Barrier(2)

    def worker(token: str) -> None:
        mine: list[int] = []
        barrier.wait()
        while True:
            with database.session() as session:
                batch = outbox.claim(session, campaign, token, limit=7, lease=LEASE, now=NOW)
            if not batch:
                break
            mine += [m.id for m in batch]
        got[token] = mine

    threads = [threading.Thread(target=worker, args=(t * 32,)) for t in "xy"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = got["x" * 32] + got["y" * 32]
    assert len(everything) == 300 and len(set(everything)) == 300
