import csv
import io
import tracemalloc

from openpyxl import load_workbook

from kesher.contacts import export
from kesher.contacts import fields as field_service
from kesher.contacts import groups
from kesher.contacts import service as contacts
from kesher.contacts.service import ContactFilter
from kesher.contacts.upsert import upsert_contacts

COLUMNS = [
    export.Column("first_name", "שם פרטי"),
    export.Column("phone", "טלפון"),
    export.Column("fields.shoe_size", "מידת נעל"),
    export.Column("fields.notes", "הערות"),
    export.Column("created_at", "נוצר"),
]


def _contacts(session, workspace):
    field_service.create_field(session, workspace.id, "shoe_size", "Shoe size", "number")
    field_service.create_field(session, workspace.id, "notes", "Notes", "text")
    vip = groups.create(session, workspace.id, "list", "VIP")
    dana = contacts.save_contact(session, workspace.id, {
        "first_name": "דנה", "phone": "050-1234567", "fields": {"shoe_size": "38", "notes": "=HYPERLINK(\"http://x\")"},
    }).contact_id
    contacts.save_contact(session, workspace.id, {"first_name": "@SUM(A1)", "email": "evil@example.com",
                                                  "fields": {"notes": "-2+3"}})
    contacts.save_contact(session, workspace.id, {"first_name": "מחוץ לרשימה", "email": "out@example.com"})
    groups.add_contacts(session, workspace.id, "list", vip.id, [dana])
    return vip


def test_formula_escape() -> None:
    assert [export.escape_formula(v) for v in ("=1+1", "+972", "-5", "@x", "\tx", "\rx", "plain", "דנה")] == [
        "'=1+1", "'+972", "'-5", "'@x", "'\tx", "'\rx", "plain", "דנה"]


def test_csv_has_bom_hebrew_chosen_columns_and_escaped_formulas(session, workspace) -> None:
    vip = _contacts(session, workspace)
    raw = b"".join(export.csv_chunks(session, workspace.id, ContactFilter(), COLUMNS, "Asia/Jerusalem", batch=2))
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == ["שם פרטי", "טלפון", "מידת נעל", "הערות", "נוצר"]
    assert [r[:4] for r in rows[1:]] == [
        ["דנה", "'+972501234567", "38", "'=HYPERLINK(\"http://x\")"],
        ["'@SUM(A1)", "", "", "'-2+3"],
        ["מחוץ לרשימה", "", "", ""],
    ]
    assert len(rows[1][4]) == len("2024-01-01 10:00:00")

    only_vip = b"".join(export.csv_chunks(session, workspace.id, ContactFilter(list_id=vip.id), COLUMNS[:1], "UTC"))
    assert only_vip.decode("utf-8-sig").splitlines() == ["שם פרטי", "דנה"]


def test_xlsx_reads_back_with_types_and_escaped_formulas(session, workspace, tmp_path) -> None:
    _contacts(session, workspace)
    path = tmp_path / "contacts.xlsx"
    export.write_xlsx(session, workspace.id, ContactFilter(), COLUMNS, "Asia/Jerusalem", path, title="אנשי קשר",
                      right_to_left=True, batch=2)
    book = load_workbook(path)
    sheet = book["אנשי קשר"]
    assert sheet.sheet_view.rightToLeft
    rows = list(sheet.values)
    assert rows[0] == ("שם פרטי", "טלפון", "מידת נעל", "הערות", "נוצר")
    assert [r[:4] for r in rows[1:]] == [
        ("דנה", "'+972501234567", 38, "'=HYPERLINK(\"http://x\")"),
        ("'@SUM(A1)", None, None, "'-2+3"),
        ("מחוץ לרשימה", None, None, None),
    ]
    assert all(sheet.cell(row, 4).data_type != "f" for row in range(1, 5))
    assert rows[1][4].tzinfo is None and rows[1][4].year >= 2024


def test_export_memory_does_not_grow_with_the_number_of_rows(session, workspace) -> None:
    def peak(count: int) -> int:
        flt = ContactFilter(city=f"city-{count}")
        items = [contacts.build_input(session, workspace.id, i, {"email": f"m{count}-{i}@example.com",
                                                                 "first_name": f"name {i}", "city": f"city-{count}"})
                 for i in range(count)]
        upsert_contacts(session, workspace.id, items)
        session.flush()
        session.expunge_all()
        tracemalloc.start()
        size = sum(len(chunk) for chunk in export.csv_chunks(session, workspace.id, flt, COLUMNS, "UTC", batch=200))
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert size > count * 20
        return top

    small, large = peak(400), peak(4000)
    assert large < small * 2, (small, large)  # ten times the rows, about the same memory
