"""The worker's periodic segments refresh: when it is due, and that it brings stored members up to date."""

from datetime import datetime

from sqlalchemy import insert, update

from kesher.accounts.models import Workspace
from kesher.config import Settings
from kesher.contacts import service as contacts
from kesher.contacts.models import Contact
from kesher.segments import membership
from kesher.segments import service as segments
from kesher.segments.models import Segment
from kesher.worker import queue

HAIFA = {"field": "city", "op": "eq", "value": "Haifa"}


def due(huey, hour: int, minute: int) -> set[str]:
    return {task.name for task in huey.read_periodic(datetime(2026, 6, 1, hour, minute))}


def test_the_refresh_is_hourly_by_default_and_follows_the_setting(database):
    hourly = queue(Settings(queue="immediate", database_url=database.url)).huey
    assert "refresh_segments" in due(hourly, 10, 15)
    assert "refresh_segments" not in due(hourly, 10, 30)
    nightly = queue(Settings(queue="immediate", database_url=database.url, segments_cron="30 2 * * *")).huey
    assert "refresh_segments" in due(nightly, 2, 30)
    assert "refresh_segments" not in due(nightly, 10, 0)


def test_the_periodic_task_refreshes_every_workspaces_segments(database, workspace, other_workspace):
    with database.session() as s:
        mine, theirs = s.get(Workspace, workspace.id), s.get(Workspace, other_workspace.id)
        leaves = contacts.save_contact(s, mine.id, {"email": "leaves@example.com", "city": "Haifa"}).contact_id
        ids = [segments.create_segment(s, ws, "Haifa", HAIFA).id for ws in (mine, theirs)]
    with database.session() as s:  # behind the segments' back, as a bulk SQL fix would
        s.execute(update(Contact).where(Contact.id == leaves).values(city="Eilat"))
        s.execute(insert(Contact), [{"workspace_id": ws.id, "email": "new@example.com", "city": "Haifa"}
                                    for ws in (workspace, other_workspace)])
        before = {sid: s.get(Segment, sid).refreshed_at for sid in ids}

    huey = queue(Settings(queue="immediate", database_url=database.url)).huey
    task = next(t for t in huey.read_periodic(datetime(2026, 6, 1, 10, 15)) if t.name == "refresh_segments")
    huey.execute(task)

    with database.session() as s:
        for sid in ids:
            segment = s.get(Segment, sid)
            assert segment.member_count == 1
            assert segment.refreshed_at > before[sid]
        members, _ = contacts.search(s, workspace.id, contacts.ContactFilter(where=[membership.members_of(ids[0])]))
        assert [c.email for c in members] == ["new@example.com"]
        assert segments.segments_of_contact(s, workspace.id, leaves) == []
