import csv
import io
import json
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from kesher.contacts import importer
from kesher.contacts import service as contacts
from kesher.contacts.models import Contact, CustomField, ImportJob, ListMembership
from kesher.db.base import utcnow
from kesher.errors import ValidationError

HEBREW = [["שם פרטי", "שם משפחה", "טלפון", "אימייל", "עיר", "תאריך לידה"],
          ["דנה", "כהן", "050-1234567", "dana@example.co.il", "חיפה", "12/03/1950"],
          ["יוסי", "לוי", "052-7654321", "yossi@example.co.il", "תל אביב-יפו", ""]]


def write_csv(path, rows, encoding="utf-8", delimiter=","):
    with open(path, "w", encoding=encoding, newline="") as fh:
        csv.writer(fh, delimiter=delimiter).writerows(rows)
    return path


def run(database, workspace, path, **options):
    with database.session() as s:
        job = importer.create_import(s, workspace.id, path.name, str(path), enqueue=False, **options)
    return importer.run_import(database, job.id, batch_size=2)


def errors_of(database, workspace, job):
    with database.session() as s:
        return [(e.row, e.column, e.text("en")) for e in importer.import_errors(s, workspace.id, job.id)]


def contact_rows(database, workspace):
    with database.session() as s:
        return s.execute(select(Contact.email, Contact.phone, Contact.first_name, Contact.city, Contact.birthday)
                         .where(Contact.workspace_id == workspace.id).order_by(Contact.id)).all()


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1255"])
def test_hebrew_headers_in_any_excel_encoding(database, workspace, tmp_path, encoding):
    job = run(database, workspace, write_csv(tmp_path / "c.csv", HEBREW, encoding))
    assert (job.status, job.created, job.failed) == ("done", 2, 0)
    assert contact_rows(database, workspace) == [
        ("dana@example.co.il", "+972501234567", "דנה", "חיפה", date(1950, 3, 12)),
        ("yossi@example.co.il", "+972527654321", "יוסי", "תל אביב-יפו", None),
    ]


def test_semicolon_csv_english_headers_and_list(database, workspace, tmp_path):
    rows = [["First Name", "E-mail", "Mobile"], ["Ann", "ann@example.com", "+44 7700 900123"]]
    job = run(database, workspace, write_csv(tmp_path / "c.csv", rows, delimiter=";"), list_name="Newsletter")
    assert job.created == 1
    with database.session() as s:
        assert s.scalar(select(func.count()).select_from(ListMembership)
                        .where(ListMembership.workspace_id == workspace.id)) == 1


def test_bad_rows_are_reported_and_good_rows_kept(database, workspace, tmp_path):
    rows = [HEBREW[0],
            ["א", "", "12", "not-an-email", "", ""],
            ["ב", "", "", "b@example.com", "", "31/02/1990"],
            ["x" * 50_000, "", "", "c@example.com", "", ""],
            ["ד", "", "", "d@example.com", "", ""],
            ["רק שם", "", "", "", "", ""]]
    job = run(database, workspace, write_csv(tmp_path / "c.csv", rows))
    assert (job.created, job.failed) == (1, 4)
    errs = errors_of(database, workspace, job)
    assert {(r, c) for r, c, _ in errs} == {(2, "טלפון"), (2, "אימייל"), (3, "תאריך לידה"), (4, "שם פרטי"),
                                           (6, "אימייל")}
    assert any("50,000 characters" in m for _, _, m in errs)
    assert [r[0] for r in contact_rows(database, workspace)] == ["d@example.com"]


def test_duplicates_in_file_merge_and_a_second_run_changes_nothing(database, workspace, tmp_path):
    rows = [["email", "phone", "city"], ["a@example.com", "", "חיפה"], ["A@Example.com", "0541111111", ""],
            ["", "054-1111111", ""], ["b@example.com", "", ""]]
    path = write_csv(tmp_path / "c.csv", rows)
    first = run(database, workspace, path)
    assert (first.created, first.updated, first.skipped, first.failed) == (2, 1, 1, 0)
    again = run(database, workspace, path)
    assert (again.created, again.updated, again.skipped, again.failed) == (0, 0, 4, 0)
    assert contact_rows(database, workspace)[0][:4] == ("a@example.com", "+972541111111", None, "חיפה")
    assert len(contact_rows(database, workspace)) == 2


def test_xlsx_keeps_formulas_as_text_and_reads_excel_values(database, workspace, tmp_path):
    book = Workbook()
    sheet = book.active
    sheet.append(["First name", "Phone", "Email", "Birthday", "Orders"])
    sheet.append(['=HYPERLINK("http://evil.example","click")', 501234567, "f@example.com", datetime(1948, 5, 14), 3])
    path = tmp_path / "c.xlsx"
    book.save(path)
    job = run(database, workspace, path)
    assert (job.created, job.failed) == (1, 0)
    email, phone, first, _, birthday = contact_rows(database, workspace)[0]
    assert (first, phone, birthday) == ('=HYPERLINK("http://evil.example","click")', "+972501234567", date(1948, 5, 14))
    with database.session() as s:
        assert [f.key for f in s.scalars(select(CustomField).where(CustomField.workspace_id == workspace.id))] == ["orders"]


def test_manual_mapping_and_unknown_columns(database, workspace, tmp_path):
    rows = [["Client", "Where", "מידת נעליים", "Notes"], ["c-1", "אילת", "38", "VIP"]]
    path = write_csv(tmp_path / "c.csv", rows)
    job = run(database, workspace, path, mapping={"Client": "external_id", "Where": "city", "Notes": "skip"})
    assert job.created == 1
    with database.session() as s:
        contact = s.scalars(select(Contact).where(Contact.workspace_id == workspace.id)).one()
        detail = contacts.contact_detail(s, workspace.id, contact.id)
        assert (contact.external_id, contact.city) == ("c-1", "אילת")
        assert list(detail.fields.values()) == ["38"]
        label = s.scalars(select(CustomField.label).where(CustomField.workspace_id == workspace.id)).one()
        assert label == "מידת נעליים"


@pytest.mark.parametrize("mapping, message", [
    ({"Nope": "email"}, "no column"),
    ({"Client": "shoe"}, "not a contact field"),
    ({"Client": "first_name"}, "no column holds an email"),
    ({"Client": "city"}, "both map to city"),
])
def test_mapping_mistakes_are_refused_before_anything_is_stored(database, workspace, tmp_path, mapping, message):
    path = write_csv(tmp_path / "c.csv", [["Client", "Town"], ["c-1", "x"]])
    with database.session() as s, pytest.raises(ValidationError) as err:
        importer.create_import(s, workspace.id, "c.csv", str(path), mapping=mapping, enqueue=False)
    assert err.value.field == "map" and message in err.value.message
    assert contact_rows(database, workspace) == []


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "binary"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "old Excel"),
    (b"PK\x03\x04garbage", "cannot be read"),
])
def test_files_that_are_not_spreadsheets(database, workspace, tmp_path, content, message):
    path = tmp_path / "c.csv"
    path.write_bytes(content)
    with database.session() as s, pytest.raises(ValidationError) as err:
        importer.create_import(s, workspace.id, "c.csv", str(path), enqueue=False)
    assert err.value.field == "file" and message in err.value.message


def test_encoding_broken_after_the_sample_stores_nothing(database, workspace, tmp_path):
    path = tmp_path / "c.csv"
    good = "email,first name\n" + "".join(f"u{i}@example.com,שם\n" for i in range(60_000))
    path.write_bytes(good.encode("utf-8") + "z@example.com,שלום\n".encode("cp1255"))
    with database.session() as s, pytest.raises(ValidationError) as err:
        importer.create_import(s, workspace.id, "c.csv", str(path), enqueue=False)
    assert "not valid utf-8" in err.value.message
    assert contact_rows(database, workspace) == []


def test_rows_with_nul_bytes_or_huge_cells_do_not_stop_the_rest(database, workspace, tmp_path):
    path = tmp_path / "c.csv"
    huge = b"y" * (2 << 20)
    path.write_bytes(b"email,city,notes\na@example.com,x,\nb@example.com,\x00bad,\nc@example.com,y,"
                     + huge + b"\nd@example.com,z,\n")
    job = run(database, workspace, path)
    assert (job.created, job.failed) == (2, 2)
    errs = errors_of(database, workspace, job)
    assert [(r, c) for r, c, _ in errs] == [(3, "city"), (4, "")]
    assert "control characters" in errs[0][2] and "cannot be read" in errs[1][2]


def test_crashed_import_resumes_where_it_stopped_without_duplicates(database, workspace, tmp_path):
    rows = [["email", "first name"]] + [[f"p{i}@example.com", f"n{i}"] for i in range(9)]
    path = write_csv(tmp_path / "c.csv", rows)
    with database.session() as s:
        job = importer.create_import(s, workspace.id, "c.csv", str(path), enqueue=False)

    def crash(j):
        if j.rows_done >= 4:
            raise KeyboardInterrupt  # a kill: nothing below the batch boundary runs

    with pytest.raises(KeyboardInterrupt):
        importer.run_import(database, job.id, batch_size=2, progress=crash)
    with database.session() as s:
        stuck = s.get(ImportJob, job.id)
        assert (stuck.status, stuck.rows_done, stuck.created) == ("running", 4, 4)
    assert importer.run_import(database, job.id, batch_size=2).status == "running"  # heartbeat still fresh
    with database.session() as s:
        s.execute(update(ImportJob).where(ImportJob.id == job.id).values(heartbeat_at=utcnow() - timedelta(minutes=5)))
    done = importer.run_import(database, job.id, batch_size=2)
    assert (done.status, done.rows_done, done.created, done.failed) == ("done", 9, 9, 0)
    assert len(contact_rows(database, workspace)) == 9


def test_import_touches_only_its_workspace(database, workspace, other_workspace, tmp_path):
    with database.session() as s:
        contacts.save_contact(s, other_workspace.id, {"email": "dana@example.co.il", "first_name": "Other"})
    run(database, workspace, write_csv(tmp_path / "c.csv", HEBREW))
    with database.session() as s:
        theirs = s.scalars(select(Contact).where(Contact.workspace_id == other_workspace.id)).one()
        assert (theirs.first_name, theirs.phone) == ("Other", None)
        with pytest.raises(Exception):
            importer.get_import(s, other_workspace.id, importer.list_imports(s, workspace.id)[0].id)


def test_cli_json_errors_out_and_exit_codes(database, workspace, tmp_path, monkeypatch):
    from kesher.cli import app
    from kesher.config import get_settings

    monkeypatch.setenv("KESHER_DATABASE_URL", database.url)
    get_settings.cache_clear()
    rows = HEBREW + [["רע", "", "12", "", "", ""]]
    path = write_csv(tmp_path / "c.csv", rows)
    out = tmp_path / "errors.csv"
    result = CliRunner().invoke(app, ["import", "contacts", str(path), "--workspace", workspace.slug, "--json",
                                      "--errors-out", str(out), "--list", "יבוא"])
    get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert (report["created"], report["updated"], report["skipped"]) == (2, 0, 0)
    assert report["errors"] == [{"row": 4, "column": "טלפון", "message": "'12' is not a valid phone number"}]
    assert out.read_text(encoding="utf-8-sig").splitlines()[1].startswith("4,טלפון")
    monkeypatch.setenv("KESHER_DATABASE_URL", database.url)
    bad = CliRunner().invoke(app, ["import", "contacts", str(path), "--workspace", workspace.slug,
                                   "--map", "nothing=email"])
    get_settings.cache_clear()
    assert bad.exit_code == 2 and "no column" in bad.output


def test_a_row_that_only_changes_consent_counts_as_updated(database, workspace, tmp_path):
    run(database, workspace, write_csv(tmp_path / "a.csv", [["email", "הסכמה לדיוור"], ["c@example.com", "לא"]]))
    job = run(database, workspace, write_csv(tmp_path / "b.csv", [["email", "הסכמה לדיוור"], ["c@example.com", "כן"]]))
    assert (job.created, job.updated, job.skipped) == (0, 1, 0)


def test_a_badly_named_new_field_is_refused_before_the_import(database, workspace, tmp_path):
    path = write_csv(tmp_path / "c.csv", [["email", "Size"], ["s@example.com", "38"]])
    with database.session() as s, pytest.raises(ValidationError) as err:
        importer.create_import(s, workspace.id, "c.csv", str(path), mapping={"Size": "custom:Shoe Size"}, enqueue=False)
    assert err.value.field == "map" and "'Shoe Size'" in err.value.message


def test_an_uploaded_file_is_removed_once_imported(database, workspace, tmp_path, monkeypatch):
    from kesher.config import Settings, get_settings

    monkeypatch.setenv("KESHER_IMPORT_DIR", str(tmp_path / "uploads"))
    get_settings.cache_clear()
    try:
        path = importer.save_upload(get_settings(), "c.csv", io.BytesIO(b"email\nu@example.com\n"))
        assert path.startswith(str(tmp_path)) and Settings().import_dir == str(tmp_path / "uploads")
        job = run(database, workspace, Path(path))
    finally:
        get_settings.cache_clear()
    assert job.created == 1 and not Path(path).exists()


def test_only_jobs_left_behind_are_queued_again(database, workspace, tmp_path):
    path = write_csv(tmp_path / "c.csv", HEBREW)
    with database.session() as s:
        ids = [importer.create_import(s, workspace.id, "c.csv", str(path), enqueue=False).id for _ in range(4)]
        long_ago = utcnow() - timedelta(minutes=10)
        s.execute(update(ImportJob).where(ImportJob.id == ids[0]).values(created_at=long_ago))  # queued, never taken
        s.execute(update(ImportJob).where(ImportJob.id == ids[1]).values(status="running", heartbeat_at=long_ago))
        s.execute(update(ImportJob).where(ImportJob.id == ids[2]).values(status="running", heartbeat_at=utcnow()))
        # ids[3]: queued a moment ago, still waiting in the queue
    queued: list[int] = []
    importer.resume_interrupted(database, queued.append)
    assert sorted(j for j in queued if j in ids) == ids[:2]
