"""`kesher segment count | list | presets | create | refresh | export | explain`."""

import csv
import io
import json
import tracemalloc

import pytest
from openpyxl import load_workbook
from sqlalchemy import insert, update

from kesher.accounts.models import Workspace
from kesher import cli
from kesher.contacts import fields
from kesher.contacts import service as contacts
from kesher.contacts.models import Contact
from kesher.segments import service as segments

HAIFA = {"field": "city", "op": "eq", "value": "Haifa"}
COMMANDS = ["count", "list", "presets", "create", "refresh", "export", "explain"]


@pytest.fixture
def people(database, workspace):
    """Two contacts in Haifa and one in Eilat; their ids, newest last."""
    with database.session() as s:
        fields.create_field(s, workspace.id, "plan", "Plan", "text")
        return [contacts.save_contact(s, workspace.id, data).contact_id for data in (
            {"email": "dana@example.co.il", "first_name": "דנה", "city": "Haifa", "fields": {"plan": "pro"}},
            {"phone": "050-1234567", "first_name": "=cmd()", "city": "Haifa"},
            {"email": "eli@example.com", "city": "Eilat"})]


def rule_file(path, rule):
    path.write_text(json.dumps(rule, ensure_ascii=False), encoding="utf-8")
    return path


def saved(database, workspace, name, rule):
    with database.session() as s:
        return segments.create_segment(s, s.get(Workspace, workspace.id), name, rule).id


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(kesher, command):
    result = kesher("segment", command, "--help")
    assert result.exit_code == 0 and "Usage" in result.output


def test_count_prints_the_count_and_the_time_taken(kesher, people, workspace, tmp_path):
    rule = rule_file(tmp_path / "haifa.json", HAIFA)
    result = kesher("segment", "count", "--rule", rule, "--workspace", workspace.slug)
    assert result.exit_code == 0, result.output
    assert "2 contacts match (" in result.stdout and " ms)" in result.stdout
    report = json.loads(kesher("segment", "count", "--rule", rule, "--workspace", workspace.id, "--json").stdout)
    assert report["count"] == 2 and report["seconds"] >= 0


@pytest.mark.parametrize("content, expected", [
    (json.dumps({"all": [HAIFA, {"event": "purchase", "within_days": 0}]}), "rule: $.all[1].within_days"),
    (json.dumps({"field": "shoe_size", "op": "eq", "value": 1}), "rule: $.field"),
    ("{not json", "is not JSON"),
])
def test_a_bad_rule_exits_2_naming_where(kesher, workspace, tmp_path, content, expected):
    path = tmp_path / "rule.json"
    path.write_text(content)
    result = kesher("segment", "count", "--rule", path, "--workspace", workspace.slug)
    assert result.exit_code == 2
    assert expected in " ".join(result.output.split())  # the terminal wraps long paths


def test_a_missing_file_or_workspace_exits_2(kesher, workspace, tmp_path):
    missing = kesher("segment", "count", "--rule", tmp_path / "missing.json", "--workspace", workspace.slug)
    assert missing.exit_code == 2 and "cannot read" in missing.output
    rule = rule_file(tmp_path / "haifa.json", HAIFA)
    assert kesher("segment", "count", "--rule", rule, "--workspace", "nope").exit_code == 2


def test_create_from_a_rule_or_a_preset_and_list(kesher, people, database, workspace, tmp_path):
    rule = rule_file(tmp_path / "haifa.json", HAIFA)
    made = kesher("segment", "create", "--name", "חיפה", "--rule", rule, "--description", "north",
                  "--workspace", workspace.slug)
    assert made.exit_code == 0, made.output
    assert "created: חיפה (2 members)" in made.stdout
    vip = json.loads(kesher("segment", "create", "--preset", "vip", "--workspace", workspace.slug, "--json").stdout)
    assert (vip["preset"], vip["rule"]["op"]) == ("vip", "top_percent")
    clicked = kesher("segment", "create", "--preset", "clicked_link", "--name", "Spring clickers",
                     "--param", "campaign_id=spring", "--param", "url=https://shop.example/sale",
                     "--description", "from the CLI", "--workspace", workspace.slug, "--json")
    assert clicked.exit_code == 0, clicked.output
    assert json.loads(clicked.stdout)["description"] == "from the CLI"

    listed = json.loads(kesher("segment", "list", "--workspace", workspace.slug, "--json").stdout)
    assert [(s["name"], s["member_count"]) for s in listed] == sorted([
        ("חיפה", 2), (vip["name"], 0), ("Spring clickers", 0)])
    text = kesher("segment", "list", "--workspace", workspace.slug).stdout
    assert "חיפה" in text and "2 members" in text and "refreshed 20" in text


@pytest.mark.parametrize("args, expected", [
    (["--name", "x"], "give --rule FILE or --preset KEY"),
    (["--name", "x", "--preset", "vip", "--rule", "haifa.json"], "give --rule FILE or --preset KEY"),
    (["--rule", "haifa.json"], "needs a name"),
    (["--preset", "nope"], "no preset 'nope'"),
    (["--preset", "clicked_link"], "params.campaign_id"),
    (["--preset", "clicked_link", "--param", "campaign_id"], "name=value"),
])
def test_create_refuses_what_it_cannot_save(kesher, database, workspace, tmp_path, args, expected):
    rule_file(tmp_path / "haifa.json", HAIFA)
    result = kesher("segment", "create", *args, "--workspace", workspace.slug)
    assert result.exit_code == 2
    assert expected in result.output
    with database.session() as s:
        assert segments.list_segments(s, workspace.id) == []


def test_presets_are_listed_with_their_parameters(kesher):
    result = kesher("segment", "presets")
    assert result.exit_code == 0
    loyal = next(line for line in result.stdout.splitlines() if line.startswith("loyal "))
    assert "Loyal customers: At least" in loyal
    assert "--param campaign_id=..." in result.stdout


def test_refresh_reports_who_entered_and_who_left(kesher, people, database, workspace, other_workspace):
    haifa = saved(database, workspace, "Haifa", HAIFA)
    eilat = saved(database, workspace, "Eilat", {"field": "city", "op": "eq", "value": "Eilat"})
    theirs = saved(database, other_workspace, "Theirs", HAIFA)
    with database.session() as s:  # behind the segments' back
        s.execute(update(Contact).where(Contact.id == people[0]).values(city="Eilat"))

    one = kesher("segment", "refresh", haifa, "--workspace", workspace.slug)
    assert one.exit_code == 0, one.output
    assert "Haifa: 0 entered, 1 left, 1 members" in one.stdout and "Eilat" not in one.stdout
    every = json.loads(kesher("segment", "refresh", "--workspace", workspace.slug, "--json").stdout)
    assert [(r["id"], r["entered"], r["exited"], r["member_count"]) for r in every] == [
        (eilat, 1, 0, 2), (haifa, 0, 0, 1)]
    assert kesher("segment", "refresh", theirs, "--workspace", workspace.slug).exit_code == 2
    everywhere = kesher("segment", "refresh", "--json")
    assert everywhere.exit_code == 0
    assert {haifa, eilat, theirs} <= {r["id"] for r in json.loads(everywhere.stdout)}


def test_export_a_segment_to_csv_with_the_columns_asked(kesher, people, database, workspace, tmp_path):
    haifa = saved(database, workspace, "Haifa", HAIFA)
    out = tmp_path / "haifa.csv"
    result = kesher("segment", "export", haifa, "--columns", "email, first_name,phone,fields.plan", "--out", out,
                    "--workspace", workspace.slug)
    assert result.exit_code == 0, result.output
    assert "2 contacts exported to" in result.stdout
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert list(csv.reader(io.StringIO(raw.decode("utf-8-sig")))) == [
        ["email", "first_name", "phone", "fields.plan"],
        ["dana@example.co.il", "דנה", "", "pro"],
        ["", "'=cmd()", "'+972501234567", ""]]


def test_export_memory_does_not_grow_with_the_rows(kesher, database, workspace, tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "EXPORT_BATCH", 50)

    def peak(count: int) -> int:
        city = f"city-{count}"
        with database.session() as s:
            s.execute(insert(Contact), [{"workspace_id": workspace.id, "email": f"m{count}-{n}@example.com",
                                         "first_name": f"name {n}", "city": city} for n in range(count)])
        segment = saved(database, workspace, city, {"field": "city", "op": "eq", "value": city})
        out = tmp_path / f"{city}.csv"
        tracemalloc.start()
        result = kesher("segment", "export", segment, "--columns", "email,first_name,city", "--out", out,
                        "--workspace", workspace.slug)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert result.exit_code == 0, result.output
        assert len(out.read_text(encoding="utf-8-sig").splitlines()) == count + 1
        return top

    small, large = peak(100), peak(1000)
    assert large < small * 2, (small, large)  # ten times the rows, about the same memory


def test_export_a_rules_matches_to_xlsx(kesher, people, workspace, tmp_path):
    rule = rule_file(tmp_path / "eilat.json", {"not": HAIFA})
    out = tmp_path / "eilat.xlsx"
    result = kesher("segment", "export", "--rule", rule, "--format", "xlsx", "--columns", "email,city", "--out", out,
                    "--workspace", workspace.slug)
    assert result.exit_code == 0, result.output
    sheet = load_workbook(out).active
    assert sheet.sheet_view.rightToLeft  # the workspace is Hebrew
    assert list(sheet.values) == [("email", "city"), ("eli@example.com", "Eilat")]


@pytest.mark.parametrize("args, expected", [
    (["--columns", "email,shoe_size"], "no column 'shoe_size'"),
    (["--columns", " , "], "name at least one column"),
    (["--format", "pdf"], "must be csv or xlsx"),
    (["--rule", "haifa.json"], "give a segment ID or --rule FILE"),
])
def test_export_refuses_bad_options(kesher, people, database, workspace, tmp_path, args, expected):
    haifa = saved(database, workspace, "Haifa", HAIFA)
    rule_file(tmp_path / "haifa.json", HAIFA)
    result = kesher("segment", "export", haifa, *args, "--out", tmp_path / "out.csv", "--workspace", workspace.slug)
    assert result.exit_code == 2
    assert expected in result.output
    assert not (tmp_path / "out.csv").exists()


def test_export_of_another_workspaces_segment_exits_2(kesher, database, workspace, other_workspace, tmp_path):
    theirs = saved(database, other_workspace, "Theirs", HAIFA)
    result = kesher("segment", "export", theirs, "--out", tmp_path / "out.csv", "--workspace", workspace.slug)
    assert result.exit_code == 2 and f"no segment {theirs}" in result.output


def test_explain_shows_each_condition(kesher, people, database, workspace):
    segment = saved(database, workspace, "Haifa pros", {"all": [HAIFA, {"field": "plan", "op": "eq", "value": "pro"}]})
    inside = kesher("segment", "explain", segment, people[0], "--workspace", workspace.slug)
    assert inside.exit_code == 0, inside.output
    lines = inside.stdout.splitlines()
    assert lines[0].startswith(f"contact {people[0]} is a member of segment {segment}")
    assert lines[1] == "yes  $  all"
    assert lines[2].startswith("  yes  $.all[0]  ") and '"value": "Haifa"' in lines[3]

    outside = json.loads(kesher("segment", "explain", segment, people[1], "--workspace", workspace.slug,
                                "--json").stdout)
    assert (outside["member"], outside["matched"]) == (False, False)
    assert [c["matched"] for c in outside["explanation"]["children"]] == [True, False]
    missing = kesher("segment", "explain", segment, 2**40, "--workspace", workspace.slug)
    assert missing.exit_code == 2 and "contact_id" in missing.output
