"""The explorer's and the timeline's query: newest first by when things happened."""

import pytest

from kesher.contacts import service as contacts
from kesher.errors import ValidationError
from kesher.events.ingest import ingest
from kesher.events.service import EventFilter, find_events


def test_history_imported_later_sorts_by_when_it_happened(database, workspace):
    with database.session() as s:
        cid = contacts.save_contact(s, workspace.id, {"email": "t@example.com"}).contact_id
        ws = s.get(type(workspace), workspace.id)
        ingest(s, ws, [{"type": "page_view", "contact": {"id": cid}, "ts": "2026-05-01T10:00:00Z",
                        "properties": {"url": "https://shop/new"}}])
        ingest(s, ws, [{"type": "page_view", "contact": {"id": cid}, "ts": f"2026-01-0{day}T10:00:00Z",
                        "properties": {"url": f"https://shop/old{day}"}} for day in (1, 2, 2, 2, 3)])
        seen, cursor = [], None
        while True:
            page, cursor = find_events(s, workspace.id, EventFilter(contact_id=cid, type="page_view"), cursor=cursor,
                                       limit=2)
            seen += page
            if cursor is None:
                break
    assert [e.properties["url"] for e in seen][:2] == ["https://shop/new", "https://shop/old3"]
    assert len(seen) == 6 == len({e.id for e in seen})
    assert [e.ts for e in seen] == sorted((e.ts for e in seen), reverse=True)


def test_a_made_up_cursor_is_refused(database, workspace):
    with database.session() as s, pytest.raises(ValidationError) as err:
        find_events(s, workspace.id, EventFilter(), cursor="bm90LWEtY3Vyc29y")
    assert err.value.field == "cursor"
