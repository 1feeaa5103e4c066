"""Message templates: sandboxed Jinja2, smoove-style merge tags, segment blocks.

Marketers write templates, so a template is untrusted code. It runs in Jinja's immutable sandbox
with no loader (`include`, `import` and `extends` have nothing to load), and before it is saved it
is checked twice: statically, for any reach into Python's insides (names starting with "_",
methods that change data), and by a trial render for a sample contact, where the sandbox refuses
whatever the static check missed.

A missing value renders empty, and `default` treats missing, None and blank alike, so
`{{ contact.first_name | default("חבר/ה") }}` greets everyone. A dict's item is read before its
attribute, so a field named `items` is the field; for a contact without it, the dict's method found
instead is missing too, except where it is called.

Merge tags are translated to Jinja before compiling, keeping line numbers:
`[[שם פרטי]]` -> `{{ contact.first_name }}`, `[[שם פרטי|חבר/ה]]` with a fallback, and custom
fields by key or label (`[[מספר נעליים]]`). The names are the ones an import maps columns by
(`kesher.contacts.columns`).
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Iterable, Mapping
from typing import Any

from jinja2 import ChainableUndefined, Template, nodes, pass_context
from jinja2.exceptions import SecurityError, TemplateSyntaxError
from jinja2.ext import Extension
from jinja2.parser import Parser
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from kesher.contacts.columns import field_for_header, header_key
from kesher.errors import ValidationError
from kesher.messages.products import product_block, shekels

HTML_PARTS = frozenset({"html", "preheader", "document"})  # autoescaped; subject and text are not
JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_MERGE = re.compile(r"(?P<jinja>\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\})"
                    r"|\[\[\s*(?P<name>[^\[\]|\n]+?)\s*(?:\|(?P<fallback>[^\[\]\n]*))?\]\]", re.S)
# Methods that change the data they are called on: the immutable sandbox refuses them at render
# time; refusing them at save time says so before a campaign meets them.
_CHANGES_DATA = frozenset({"append", "extend", "insert", "remove", "pop", "popitem", "clear", "update",
                           "setdefault", "add", "discard", "sort", "reverse", "difference_update",
                           "intersection_update", "symmetric_difference_update", "mro"})


class Missing(ChainableUndefined):
    """A value the contact does not have: renders empty, chains (`a.b.c`), compares false."""

    __slots__ = ()

    def _false(self, other: Any) -> bool:
        return False

    __lt__ = __le__ = __gt__ = __ge__ = _false  # type: ignore[assignment]


class _DictMethod(Missing):
    """A plain dict's method, found for a name the dict holds no item of (`contact.fields.items` for a
    contact without that field): a missing value where it is written (empty, false, and `default`
    applies), the method where it is called (`contact.fields.items()`). A message never shows
    `<built-in method ...>`."""

    __slots__ = ("_method",)

    def __init__(self, method: Any, name: str) -> None:
        super().__init__(name=name)
        self._method = method

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._method(*args, **kwargs)


class _Sandbox(ImmutableSandboxedEnvironment):
    def getattr(self, obj: Any, attribute: str) -> Any:
        """`contact.first_name` on a plain dict: its item, found first. Jinja looks for a dict's attribute
        (a method) first, so a custom field named `items` or `values` rendered as a method, and the
        AttributeError it caught for every other name cost 3% of a campaign message's instructions.
        A dict's own methods are still found, and checked, when it holds no item of that name
        (`_DictMethod`); an item is data, which `contact["name"]` reads unchecked too."""
        if type(obj) is dict:
            try:
                return obj[attribute]
            except KeyError:
                pass
            found = super().getattr(obj, attribute)
            return _DictMethod(found, attribute) if type(found) is types.BuiltinMethodType else found
        return super().getattr(obj, attribute)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        # Refused at once, not as an undefined that renders empty: the trial render must see it.
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")


class SegmentBlock(Extension):
    """`{% segment "VIP" %}...{% else %}...{% endsegment %}`: shown only to the segment's members."""

    tags = {"segment"}

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        name = parser.parse_expression()
        body = parser.parse_statements(("name:else", "name:endsegment"))
        else_: list[nodes.Node] = []
        if next(parser.stream).test("name:else"):
            else_ = parser.parse_statements(("name:endsegment",), drop_needle=True)
        test = nodes.Call(nodes.Name("in_segment", "load"), [name], [], None, None)
        return nodes.If(test, body, [], else_, lineno=lineno)


@pass_context
def in_segment(context: Context, name: Any) -> bool:
    """Whether the contact is in the segment of that name now."""
    segments = context.get("segments") or ()
    return isinstance(name, str) and " ".join(name.split()) in segments


@pass_context
def field_value(context: Context, name: Any) -> Any:
    """A custom field of the contact by key or label (as `header_key` spells it); missing when unknown."""
    contact = context.get("contact")
    fields = contact.get("fields") if isinstance(contact, Mapping) else None
    if isinstance(fields, Mapping) and isinstance(name, str):
        if name in fields:
            return fields[name]
        key = (context.get("field_keys") or {}).get(name)
        if key in fields:
            return fields[key]
    return context.environment.undefined(name=str(name))


def default(value: Any, default_value: Any = "", boolean: bool = False) -> Any:
    """Jinja's `default`, where None and blank text count as missing too."""
    if isinstance(value, Missing) or value is None or (isinstance(value, str) and not value.strip()):
        return default_value
    return default_value if boolean and not value else value


def _autoescape(name: str | None) -> bool:
    return name in HTML_PARTS


def _environment() -> _Sandbox:
    env = _Sandbox(autoescape=_autoescape, undefined=Missing, extensions=[SegmentBlock],
                   finalize=lambda value: "" if value is None else value)
    for unneeded in ("lipsum", "cycler", "joiner"):
        env.globals.pop(unneeded, None)
    env.globals.update(in_segment=in_segment, field_value=field_value, product_block=product_block)
    env.filters.update(default=default, d=default, shekels=shekels)
    return env


ENV = _environment()


# Merge tags ---------------------------------------------------------------------------------------


def merge_fields(fields: Iterable[Any]) -> dict[str, str]:
    """Custom fields (anything with `key` and `label`) by the names a merge tag may use: key or label."""
    names: dict[str, str] = {}
    for f in fields:
        names.setdefault(header_key(f.label), f.key)
        names[header_key(f.key)] = f.key
    return names


def _literal(text: str) -> str:
    # A Jinja string literal; braces escaped so the literal never looks like the end of a tag.
    return json.dumps(text, ensure_ascii=False).replace("{", "\\u007b").replace("}", "\\u007d")


def translate_merge_tags(source: str, field: str, fields: Mapping[str, str] | None = None) -> str:
    """`[[name]]` and `[[name|fallback]]` as Jinja; text inside Jinja tags is left alone.

    `fields` (from `merge_fields`) are the workspace's custom fields: given, a tag naming none of
    them nor a built-in field is an error; not given, custom tags are looked up when rendering."""

    def tag(match: re.Match[str]) -> str:
        if match.group("jinja"):
            return match.group("jinja")
        name = match.group("name")
        builtin = field_for_header(name)
        if builtin is not None and not builtin.startswith("consent."):
            expr = f"contact.{builtin}"
        elif fields is None:
            expr = f"field_value({_literal(header_key(name))})"
        elif header_key(name) in fields:
            expr = f"field_value({_literal(fields[header_key(name)])})"
        else:
            raise ValidationError("unknown merge tag [[{name}]]: it names no contact field and no custom field", field,
                                  name=name)
        fallback = match.group("fallback")
        return f"{{{{ {expr} | default({_literal(fallback.strip())}) }}}}" if fallback is not None else f"{{{{ {expr} }}}}"

    return _MERGE.sub(tag, source)


# Compiling ----------------------------------------------------------------------------------------


def _refuse_unsafe(tree: nodes.Template, field: str) -> None:
    """Refuse what reaches inside Python objects, before the sandbox ever has to."""
    for other in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        raise ValidationError("line {line}: a template stands alone; it cannot include, import or extend another one",
                              field, line=other.lineno)
    for node in tree.find_all((nodes.Name, nodes.Getattr, nodes.Getitem, nodes.Call, nodes.Filter, nodes.Test)):
        hidden: str | None = None
        if isinstance(node, nodes.Name):
            hidden = node.name
        elif isinstance(node, nodes.Getattr):
            hidden = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            hidden = node.arg.value
        elif isinstance(node, nodes.Filter | nodes.Test):
            consts = [a for a in node.args if isinstance(a, nodes.Const)]
            consts += [k.value for k in node.kwargs if isinstance(k.value, nodes.Const)]
            hidden = next((c.value for c in consts if isinstance(c.value, str) and c.value.startswith("_")), None)
        if hidden is not None and hidden.startswith("_"):
            raise ValidationError("line {line}: {name!r} is not allowed; a template may not use names "
                                  "that start with \"_\" (they reach inside Python objects)", field,
                                  line=node.lineno, name=hidden)
        if (isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr)
                and node.node.attr in _CHANGES_DATA):
            raise ValidationError("line {line}: .{name}() is not allowed; a template may not "
                                  "change the data it is given", field, line=node.lineno, name=node.node.attr)


def build(source: str, name: str, globals: Mapping[str, Any] | None = None) -> Template:
    """Compile Jinja source already translated and checked; `name` chooses autoescaping (HTML_PARTS)."""
    code = ENV.compile(source, name=name)
    return ENV.template_class.from_code(ENV, code, _globals(globals), None)


def _globals(extra: Mapping[str, Any] | None) -> dict[str, Any]:
    # A template's globals flattened into one dict once: Jinja copies them into every render's context,
    # and copying its default (a ChainMap over the environment's globals) cost a tenth of a render.
    return dict(ENV.make_globals(extra))


def names_used(source: str) -> frozenset[str]:
    """Every name a template (translated source) reads: from its context (`contact`, `rollups`,
    `products`...), its globals (`in_segment`, which `{% segment %}` calls) or its own variables.
    So a campaign loads only the data its templates show."""
    return frozenset(name.name for name in ENV.parse(source).find_all(nodes.Name) if name.ctx == "load")


def trial_render(template: Template, field: str, context: Mapping[str, Any]) -> None:
    """Render once for a sample contact: the sandbox refuses what the static check missed."""
    try:
        template.render(context)
    except SecurityError as exc:
        raise ValidationError("is refused by the template sandbox: {detail}", field, detail=str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - any failure here would fail for real contacts too
        raise ValidationError("fails when rendered for a sample contact: {detail}", field, detail=str(exc)) from None


def compile_template(source: str, field: str, *, fields: Mapping[str, str] | None = None,
                     sample: Mapping[str, Any] | None = None) -> Template:
    """Compile one part of a message (subject, preheader, html, text) for rendering.

    Raises `ValidationError(message, field)`: a syntax error with its line, an unknown merge tag, a
    reach into Python's insides, or a failure to render for `sample` (default: `sample_context()`)."""
    from kesher.messages.context import sample_context  # context builds on this module's merge names

    if not isinstance(source, str):
        raise ValidationError("must be text", field)
    source = translate_merge_tags(source, field, fields)
    try:
        tree = ENV.parse(source, name=field)
        _refuse_unsafe(tree, field)
        code = ENV.compile(tree, name=field)
    except TemplateSyntaxError as exc:
        raise ValidationError("line {line}: {detail}", field, line=exc.lineno, detail=exc.message) from None
    template = ENV.template_class.from_code(ENV, code, _globals(None), None)
    trial_render(template, field, sample if sample is not None else sample_context())
    return template
