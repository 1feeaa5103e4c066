"""Templates: merge tags, the sandbox, segment blocks, defaults. No database: templates compile alone."""

from __future__ import annotations

import pytest

from kesher.errors import ValidationError
from kesher.messages.context import sample_context
from kesher.messages.templates import compile_template, merge_fields, translate_merge_tags


class Field:
    def __init__(self, key: str, label: str) -> None:
        self.key, self.label = key, label


FIELDS = merge_fields([Field("shoe_size", "מספר נעליים")])


def render(source: str, field: str = "html", **context) -> str:
    return compile_template(source, field, fields=FIELDS).render({**sample_context("he"), **context})


def test_merge_tags_in_hebrew_and_english_name_the_same_fields_as_import_columns():
    contact = {"first_name": "דנה", "last_name": "כהן", "email": "dana@example.com", "city": "חיפה", "fields": {}}
    text = "[[שם פרטי]] [[First Name]] [[שם משפחה]] [[last_name]] [[email]] [[מייל]] [[עיר]] [[City]]"
    assert render(text, contact=contact) == "דנה דנה כהן כהן dana@example.com dana@example.com חיפה חיפה"


def test_a_custom_field_by_label_or_key_and_a_fallback_for_what_is_missing():
    shoe = {"first_name": "", "fields": {"shoe_size": 38}}
    source = "[[מספר נעליים]]/[[shoe_size]]/[[Shoe Size]] [[שם פרטי|חבר/ה]]"
    assert render(source, contact=shoe) == "38/38/38 חבר/ה"
    assert render("[[מספר נעליים|לא ידוע]] [[שם פרטי | חבר/ה ]]", contact={"fields": {}}) == "לא ידוע חבר/ה"


def test_custom_tags_compiled_without_the_fields_are_looked_up_by_label_when_rendering():
    template = compile_template("[[מספר נעליים|?]]", "subject")
    context = {**sample_context(), "contact": {"fields": {"shoe_size": 41}},
               "field_keys": merge_fields([Field("shoe_size", "מספר נעליים")])}
    assert template.render(context) == "41"
    assert template.render(sample_context()) == "?"


def test_an_unknown_merge_tag_is_an_error_naming_it():
    with pytest.raises(ValidationError) as caught:
        compile_template("שלום [[מספר טלפון נוסף]]", "subject", fields=FIELDS)
    assert caught.value.field == "subject" and "[[מספר טלפון נוסף]]" in caught.value.message


def test_merge_tags_keep_line_numbers_and_leave_jinja_alone():
    source = "[[שם פרטי|a}}b]]\n{{ '[[not a tag]]' }}\n{% if %}"
    assert translate_merge_tags(source, "html", FIELDS).count("\n") == 2
    with pytest.raises(ValidationError, match="line 3"):
        compile_template(source, "html", fields=FIELDS)
    assert render("[[שם פרטי|a}}b]] {{ '[[x]]' }}", contact={}) == "a}}b [[x]]"


@pytest.mark.parametrize("source, named", [
    ("{{ ''.__class__.__mro__ }}", "__"),
    ("{{ cycler.__init__.__globals__ }}", "__"),
    ("{{ self._TemplateReference__context }}", "_TemplateReference__context"),
    ("{{ contact|attr('__class__') }}", "__class__"),
    ("{{ ''['__class__'] }}", "__class__"),
    ("{% set xs = [] %}{{ xs.append(1) }}", ".append()"),
    ("{{ contact.update({'email': 'x'}) }}", ".update()"),
    ("{% include 'secrets.html' %}", "include"),
    ("{% extends 'base.html' %}", "extend"),
])
def test_sandbox_escapes_are_refused_at_save_with_a_clear_message(source, named):
    with pytest.raises(ValidationError) as caught:
        compile_template(source, "html")
    assert caught.value.field == "html"
    assert named in caught.value.message and "line 1" in caught.value.message


def test_a_field_named_like_a_dict_method_reads_as_the_field():
    # "items" and "values" are also methods of the dict a contact's fields come in.
    assert render("{{ contact.fields.items }} {{ contact.fields.values }}",
                  contact={"fields": {"items": 3, "values": "ירוק"}}) == "3 ירוק"
    # A contact without them: the dict's own methods are found, and render as missing values do.
    assert render("<{{ contact.fields.items }}>{{ contact.fields.values | default('אין') }}",
                  contact={"fields": {}}) == "<>אין"
    assert render("{% if contact.fields.items %}yes{% else %}no{% endif %}", contact={"fields": {}}) == "no"
    assert render("{% for key, value in contact.fields.items() %}{{ key }}={{ value }}{% endfor %}",
                  contact={"fields": {"size": 42}}) == "size=42"


def test_what_the_static_check_cannot_see_the_trial_render_refuses():
    for source in ("{{ contact|attr('__cl' ~ 'ass__') }}", "{{ '{0.__class__}'.format('') }}"):
        with pytest.raises(ValidationError, match="refused by the template sandbox"):
            compile_template(source, "html")


def test_a_syntax_error_names_its_line_and_part():
    with pytest.raises(ValidationError) as caught:
        compile_template("<p>שלום</p>\n<p>{{ contact.first_name </p>", "text")
    assert caught.value.field == "text" and caught.value.message.startswith("line 2:")
    with pytest.raises(ValidationError, match="No filter named 'nope'"):
        compile_template("{{ 1 | nope }}", "subject")


def test_missing_values_render_empty_and_default_covers_none_and_blank():
    assert render("<{{ contact.nothing.deeper }}>", contact={}) == "<>"
    assert render("{{ contact.first_name | default('חבר/ה') }}", contact={"first_name": "  "}) == "חבר/ה"
    assert render("{% if contact.fields.points > 10 %}many{% else %}few{% endif %}", contact={"fields": {}}) == "few"


def test_html_is_escaped_and_subject_and_text_are_not():
    contact = {"first_name": "<b>Tom & Jerry</b>", "fields": {}}
    assert render("[[שם פרטי]]", "html", contact=contact) == "&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;"
    assert render("[[שם פרטי]]", "subject", contact=contact) == "<b>Tom & Jerry</b>"


def test_segment_blocks_and_in_segment_show_only_to_members():
    source = ('{% segment "VIP" %}vip{% else %}regular{% endsegment %}|'
              '{% if in_segment("לקוחות חוזרים") %}back{% endif %}')
    assert render(source, segments=frozenset({"VIP", "לקוחות חוזרים"})) == "vip|back"
    assert render(source, segments=frozenset()) == "regular|"
    assert render('{% segment "VIP" %}only{% endsegment %}', segments=frozenset()) == ""
