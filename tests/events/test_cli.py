"""`kesher events import` and `kesher rollups rebuild`."""

import json

import pytest
from sqlalchemy import func, select, update

from kesher.contacts import service as contacts
from kesher.contacts.models import Contact
from kesher.events import service
from kesher.events.models import ContactRollup

GOOD = [
    {"type": "purchase", "contact": {"email": "dana@example.co.il"}, "ts": "2026-03-01T09:00:00+02:00",
     "idempotency_key": "order-1", "properties": {"order_id": "1", "total": 99.8}},
    {"type": "email_opened", "contact": {"email": "dana@example.co.il"}, "ts": "2026-03-02T09:00:00Z",
     "idempotency_key": "open-1", "properties": {"campaign_id": "c1"}},
]


def write_lines(path, lines):
    path.write_bytes(b"\n".join(line if isinstance(line, bytes) else line.encode() for line in lines) + b"\n")
    return path


def jsonl(path, events, extra=()):
    return write_lines(path, [json.dumps(e, ensure_ascii=False) for e in events] + list(extra))


def test_import_reports_line_numbers_and_a_rerun_counts_duplicates(kesher, workspace, tmp_path):
    path = jsonl(tmp_path / "events.jsonl", GOOD, [
        "", "{not json", json.dumps({"type": "purchase", "contact": {"email": "x@example.com"}}),
        json.dumps({"type": "custom:quiz", "anonymous_id": "v-1"}), b"\xff\xfe"])
    result = kesher("events", "import", path, "--workspace", workspace.slug, "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert (report["accepted"], report["duplicates"]) == (3, 0)
    assert [(e["line"], e["field"]) for e in report["errors"]] == [
        (4, "event"), (5, "properties.order_id"), (7, "event")]
    again = json.loads(kesher("events", "import", path, "--workspace", workspace.slug, "--json").stdout)
    assert (again["accepted"], again["duplicates"], len(again["errors"])) == (1, 2, 3)  # the keyless one is new


def test_a_clean_import_exits_0_and_prints_totals(kesher, workspace, tmp_path):
    result = kesher("events", "import", jsonl(tmp_path / "e.jsonl", GOOD), "--workspace", workspace.id)
    assert result.exit_code == 0, result.output
    assert "2 accepted, 0 duplicates, 0 failed" in result.stdout


@pytest.mark.parametrize("name", ["missing.jsonl", "."])
def test_an_unreadable_file_exits_2(kesher, workspace, tmp_path, name):
    result = kesher("events", "import", tmp_path / name, "--workspace", workspace.slug)
    assert result.exit_code == 2
    assert "cannot read" in result.output


def test_an_unknown_workspace_exits_2(kesher, workspace, tmp_path):
    assert kesher("events", "import", jsonl(tmp_path / "e.jsonl", GOOD), "--workspace", "nope").exit_code == 2


def test_import_batches_keep_line_numbers_and_report_progress(database, workspace, tmp_path):
    lines = [json.dumps({"type": "custom:tick", "anonymous_id": "v", "properties": {"i": i}}) for i in range(5)]
    lines.insert(2, "[1, 2")
    lines.insert(5, json.dumps({"type": "custom:tick"}))
    path = write_lines(tmp_path / "e.jsonl", lines)
    seen = []
    totals = service.import_jsonl(database, workspace.id, path, batch_size=2, progress=seen.append)
    assert (totals.accepted, totals.duplicates) == (5, 0)
    assert [(e.line, e.field) for e in totals.errors] == [(3, "event"), (6, "event")]
    assert seen == sorted(seen) and seen[-1] == path.stat().st_size


def test_rollups_rebuild_restores_what_the_events_say(kesher, database, workspace, other_workspace, tmp_path):
    with database.session() as s:
        cid = contacts.save_contact(s, workspace.id, {"email": "dana@example.co.il"}).contact_id
    assert kesher("events", "import", jsonl(tmp_path / "e.jsonl", GOOD), "--workspace", workspace.slug).exit_code == 0
    with database.session() as s:
        s.execute(update(ContactRollup).where(ContactRollup.contact_id == cid).values(purchase_count=99, open_count=0))

    result = kesher("rollups", "rebuild", "--workspace", workspace.slug)
    assert result.exit_code == 0, result.output
    assert f"({workspace.slug}): rollups rebuilt in" in result.stdout
    with database.session() as s:
        row = s.execute(select(ContactRollup.purchase_count, ContactRollup.open_count, ContactRollup.revenue_minor)
                        .where(ContactRollup.contact_id == cid)).one()
    assert tuple(row) == (1, 1, 9980)

    every = kesher("rollups", "rebuild")
    assert every.exit_code == 0 and workspace.slug in every.stdout and other_workspace.slug in every.stdout
    assert kesher("rollups", "rebuild", "--workspace", "nope").exit_code == 2


def _state(session, workspace_id):
    """Per contact (by its key): every rollup but the periodic scores, its categories, and its segments."""
    from kesher.events.models import CategoryStat
    from kesher.segments.models import SegmentMember

    skip = {"contact_id", "workspace_id", "stage_changed_at", "engagement_score", "rfm_recency", "rfm_frequency",
            "rfm_monetary"}
    key = func.coalesce(Contact.external_id, Contact.email, Contact.phone)
    columns = [c for c in ContactRollup.__table__.c if c.name not in skip]
    rollups = {row[0]: row[1:] for row in session.execute(
        select(key, *columns).join(Contact, Contact.id == ContactRollup.contact_id)
        .where(Contact.workspace_id == workspace_id)).all()}
    categories = sorted(session.execute(
        select(key, CategoryStat.category, CategoryStat.purchase_count, CategoryStat.last_purchase_at)
        .join(Contact, Contact.id == CategoryStat.contact_id).where(Contact.workspace_id == workspace_id)).all())
    members = session.scalar(select(func.count()).select_from(SegmentMember)
                             .where(SegmentMember.workspace_id == workspace_id))
    return rollups, categories, members


def test_a_history_import_ends_where_a_live_import_does(kesher, database, workspace, other_workspace, tmp_path):
    from kesher.demo import generator
    from kesher.segments import service as segments

    year = [json.dumps(e, default=lambda o: o.isoformat(), ensure_ascii=False) for e in generator.events(40, 800, seed=3)]
    path = write_lines(tmp_path / "year.jsonl", year)
    for ws in (workspace, other_workspace):
        with database.session() as s:
            segments.create_segment(s, s.get_one(type(ws), ws.id), "loyal", {"stat": "purchase_count", "op": "gte", "value": 3})
    live = kesher("events", "import", path, "--workspace", workspace.slug, "--json")
    bulk = kesher("events", "import", path, "--workspace", other_workspace.slug, "--json", "--history")
    assert live.exit_code == bulk.exit_code == 0, bulk.output
    assert json.loads(live.stdout) == json.loads(bulk.stdout)
    with database.session() as s:
        expected, got = _state(s, workspace.id), _state(s, other_workspace.id)
    assert len(expected[0]) > 30 and expected[2] > 0
    assert got == expected
