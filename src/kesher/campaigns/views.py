"""UI routes of campaigns: the list; the editor (sender, advertising, audience with a live count,
variants and the A/B test, throttle, UTM); the pre-send checks; a preview as any contact; test
sends; sending now or at a time; pause, resume and cancel; progress and the A/B test's decision.

The form is turned into the API's own models (`CampaignIn`, `CampaignPatch`) and saved by
`campaigns.service`, so the page and the API accept and refuse the same things. A refusal comes
back next to the input it names (`variants[1].html`), and nothing is kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError as ModelError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from kesher.campaigns import abtest, audience, service
from kesher.campaigns import report as reports
from kesher.campaigns.api import start_pass_after_commit
from kesher.campaigns.models import Campaign
from kesher.campaigns.schemas import CampaignIn, CampaignPatch
from kesher.campaigns.testsend import test_send
from kesher.channels import senders
from kesher.contacts import groups
from kesher.contacts import service as contacts
from kesher.contacts.views import PageRoute, form_data
from kesher.db.base import MAX_ID, utcnow
from kesher.errors import Conflict, KesherError, NotFound, ValidationError
from kesher.events.views import shekels
from kesher.messages.context import contexts, sample_context
from kesher.messages.render import Rendered, Renderer
from kesher.segments.service import list_segments
from kesher.web.deps import UiContext, csrf_protect, transaction, ui_context
from kesher.web.i18n import _, ngettext
from kesher.web.pages import is_partial, redirect, render

router = APIRouter(dependencies=[Depends(csrf_protect)], route_class=PageRoute, include_in_schema=False)

VARIANT_FIELDS = ("subject", "preheader", "from_name", "html", "text")
UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")
SIMPLE_FIELDS = ("name", "sender_id", "advertising", "rate_per_second", "window.limit", "window.seconds", "ab",
                 "ab.test_share", "ab.metric", "ab.wait_hours", *(f"utm.{key}" for key in UTM_KEYS))
TEST_ADDRESSES = 10
# Seconds between refreshes of the status block: often while messages go out, now and then while an
# A/B test waits. Not while scheduled: a refresh would wipe a new time being typed into the form.
REFRESH = {"sending": 2, "testing": 30}
TEMPLATE_PARTS = re.compile(r"^variants\[\d+\]\.(subject|preheader|html|text)$")


def status_names() -> dict[str, str]:
    return {"draft": _("Draft"), "scheduled": _("Scheduled"), "sending": _("Sending"), "paused": _("Paused"),
            "testing": _("A/B test running"), "sent": _("Sent"), "cancelled": _("Cancelled")}


def state_names() -> dict[str, str]:
    """The states of the campaign's messages in the outbox."""
    return {"queued": _("Waiting"), "sending": _("Being sent"), "sent": _("Sent"), "failed": _("Failed"),
            "skipped": _("Skipped by policy"), "cancelled": _("Cancelled")}


def metric_names() -> dict[str, str]:
    return {"open_rate": _("Open rate"), "click_rate": _("Click rate"), "revenue": _("Revenue per recipient")}


def metric_words() -> dict[str, str]:
    """The metrics inside a sentence."""
    return {"open_rate": _("open rate"), "click_rate": _("click rate"), "revenue": _("revenue per recipient")}


def period_names() -> dict[int, str]:
    return {60: _("minute"), 3600: _("hour"), 86400: _("day")}


def level_names() -> dict[str, str]:
    return {"error": _("Blocks sending"), "warning": _("Warning"), "advice": _("Advice")}


def _campaign(session: Session, workspace_id: int, campaign_id: int) -> Campaign:
    if not 1 <= campaign_id <= MAX_ID:
        raise NotFound("no campaign {id} in this workspace", "campaign_id", id=campaign_id)
    return service.get_campaign(session, workspace_id, campaign_id)


# The form ----------------------------------------------------------------------------------------


@dataclass
class Editor:
    """The editor as typed: values by input name, the chosen lists and segments, how many variants."""

    values: dict[str, str]
    chosen: dict[str, list[int]]
    variants: int


def _plain(number: float | None) -> str:
    if number is None:
        return ""
    return str(int(number)) if float(number).is_integer() else str(number)


def blank_editor() -> Editor:
    values = dict.fromkeys(SIMPLE_FIELDS, "")
    values.update({"advertising": "on", "ab.test_share": "20", "ab.metric": "open_rate", "ab.wait_hours": "4",
                   "window.seconds": "3600"})
    return Editor(values, {key: [] for key in audience.KEYS}, 1)


def editor_of(session: Session, campaign: Campaign) -> Editor:
    editor = blank_editor()
    v = editor.values
    v.update({"name": campaign.name, "sender_id": str(campaign.sender_id or ""),
              "advertising": "on" if campaign.advertising else "", "rate_per_second": _plain(campaign.rate_per_second),
              "window.limit": _plain(campaign.window_limit)})
    if campaign.window_seconds:
        v["window.seconds"] = str(campaign.window_seconds)
    for key, value in (campaign.utm or {}).items():
        v[f"utm.{key}"] = value
    if campaign.ab:
        v.update({"ab": "on", "ab.test_share": _plain(round(float(campaign.ab.get("test_share", 0.2)) * 100, 4)),
                  "ab.metric": campaign.ab.get("metric", "open_rate"),
                  "ab.wait_hours": _plain(campaign.ab.get("wait_hours", 4))})
    variants = service.variants_of(session, campaign.id)
    for i, variant in enumerate(variants):
        for name in VARIANT_FIELDS:
            v[f"variants[{i}].{name}"] = getattr(variant, name) or ""
    editor.chosen = {key: list((campaign.audience or {}).get(key, [])) for key in audience.KEYS}
    editor.variants = max(len(variants), 1)
    return editor


def read_editor(form: FormData) -> Editor:
    values = {name: str(form.get(name) or "") for name in SIMPLE_FIELDS}
    count = 0
    while count < len(service.LABELS) and any(f"variants[{count}].{name}" in form for name in VARIANT_FIELDS):
        for name in VARIANT_FIELDS:
            values[f"variants[{count}].{name}"] = str(form.get(f"variants[{count}].{name}") or "")
        count += 1
    chosen = {key: [int(v) for v in form.getlist(f"audience.{key}") if str(v).isdigit()] for key in audience.KEYS}
    return Editor(values, chosen, max(count, 1))


def _number(text: str) -> Any:
    """A typed number, or the text as typed so that the model refuses it, naming the field."""
    text = text.strip().replace(",", "")
    if not text:
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _blank(variant: dict[str, str]) -> bool:
    return not any(value.strip() for value in variant.values())


def body_of(editor: Editor) -> dict[str, Any]:
    """The form as the API's JSON body; only variant A unless the A/B test is on."""
    v = editor.values
    testing = v["ab"] == "on"
    variants = [{name: v.get(f"variants[{i}].{name}", "") for name in VARIANT_FIELDS} for i in range(editor.variants)]
    # A/B on: blank variants after B are left out; A/B off: only A is sent, whatever else is typed.
    variants = [x for i, x in enumerate(variants) if i < 2 or not _blank(x)] if testing else variants[:1]
    for variant in variants:
        for name in ("from_name", "text"):
            variant[name] = variant[name] if variant[name].strip() else None
    share = _number(v["ab.test_share"])
    window = ({"limit": _number(v["window.limit"]), "seconds": _number(v["window.seconds"])}
              if v["window.limit"].strip() else None)
    return {
        "name": v["name"], "sender_id": _number(v["sender_id"]), "advertising": v["advertising"] == "on",
        "audience": editor.chosen, "variants": variants, "rate_per_second": _number(v["rate_per_second"]),
        "window": window, "utm": {key: v[f"utm.{key}"].strip() for key in UTM_KEYS if v[f"utm.{key}"].strip()},
        "ab": {"test_share": share / 100 if isinstance(share, int | float) else share, "metric": v["ab.metric"],
               "wait_hours": _number(v["ab.wait_hours"])} if testing else None,
    }


def _dotted(loc: tuple[int | str, ...]) -> str:
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name


def _slot(name: str) -> str:
    """Where an error shows: the audience's errors at the audience, the rest at the input of that name."""
    if name.startswith("audience"):
        return "audience"
    if name.startswith("utm.") and name.removeprefix("utm.") not in UTM_KEYS:
        return "utm"
    return name


def _problem(name: str) -> str:
    """What to do about the input `name`, in the page's language."""
    generic = re.sub(r"\[\d+\]", "[]", name)
    messages = {
        "name": _("A name is required, at most 200 characters."),
        "sender_id": _("Choose a sender identity."),
        "audience": _("Choose at least one list or segment."),
        "variants": _("An A/B test needs at least two variants: fill in variant B."),
        "variants[].subject": _("A subject is required, at most 500 characters."),
        "variants[].preheader": _("At most 500 characters."),
        "variants[].from_name": _("At most 200 characters."),
        "variants[].html": _("The HTML body is required."),
        "variants[].text": _("The text is too long."),
        "rate_per_second": _("Enter messages per second: a number above 0, at most 100,000."),
        "window.limit": _("Enter how many messages: a whole number, 1 or more."),
        "window.seconds": _("Choose a period."),
        "ab.test_share": _("Enter the test share in percent: above 0 and below 100."),
        "ab.metric": _("Choose how the winner is chosen."),
        "ab.wait_hours": _("Enter the hours to wait: above 0, at most 336 (two weeks)."),
        "utm": _("UTM parameters are utm_source, utm_medium, utm_campaign, utm_content and utm_term."),
    }
    if generic.startswith("utm."):
        return _("At most 200 characters.")
    return messages.get(generic, messages.get(_slot(generic), _("Please correct this field.")))


def model_errors(exc: ModelError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for error in exc.errors():
        name = _dotted(tuple(error["loc"]))
        errors.setdefault(_slot(name), _problem(name))
    return errors


def _not_now(campaign: Campaign) -> str:
    return _("Not possible while the campaign is %(status)s.") % {
        "status": status_names().get(campaign.status, campaign.status)}


def service_errors(exc: KesherError, campaign: Campaign | None = None) -> dict[str, str]:
    """A refusal by the service, next to the input it names; a template's own mistake is quoted."""
    name = exc.field or ""
    if isinstance(exc, NotFound):  # the only thing looked up while saving is the sender
        return {"sender_id": _("Choose a sender identity.")}
    if isinstance(exc, Conflict):
        if name == "audience":
            return {"audience": _("A campaign that started sending keeps its audience; cancel it and send a new one "
                                  "to change who gets it.")}
        return {"": _not_now(campaign) if campaign is not None else exc.text()}
    if TEMPLATE_PARTS.match(name):
        return {name: _("The template has a mistake: %(detail)s") % {"detail": exc.text()}}
    if name.startswith("audience."):
        return {"audience": _("A chosen list or segment is no longer in this workspace.")}
    return {_slot(name): _problem(name)}


# The page's parts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    variant: str
    level: str
    message: str
    field: str


def checks_of(session: Session, ctx: UiContext, campaign: Campaign) -> list[Check]:
    """The pre-send checks, translated, errors first."""
    found = []
    order = {"error": 0, "warning": 1}
    for label, finding in service.findings(session, ctx.workspace, campaign):
        found.append(Check(label, finding.level, finding.text(), finding.field))
    return sorted(found, key=lambda c: (order.get(c.level, 2), c.variant))


def _own_audience(session: Session, workspace_id: int, spec: dict[str, list[int]]) -> bool:
    """Whether every list and segment chosen is the workspace's own."""
    try:
        for list_id in spec["lists"] + spec["exclude_lists"]:
            groups.get(session, workspace_id, "list", list_id)
    except NotFound:
        return False
    return {s.id for s in list_segments(session, workspace_id)}.issuperset(spec["segments"] + spec["exclude_segments"])


def audience_count(session: Session, workspace_id: int, chosen: dict[str, list[int]]) -> str:
    if not chosen.get("lists") and not chosen.get("segments"):
        return _("Choose lists or segments to see who will get the campaign.")
    spec = audience.clean(chosen)
    if not _own_audience(session, workspace_id, spec):
        return _("A chosen list or segment is no longer in this workspace.")
    total = audience.count(session, workspace_id, "email", spec)
    return ngettext("%(num)s contact can be reached", "%(num)s contacts can be reached", total) % {
        "num": f"{total:,}"}


@dataclass(frozen=True)
class Preview:
    variant: str
    who: str
    rendered: Rendered | None
    problem: str = ""


def _find_contact(session: Session, workspace_id: int, text: str) -> int | None:
    text = text.strip().lstrip("#")
    if not text:
        return None
    if text.isdigit() and int(text) <= MAX_ID:
        return contacts.get_contact(session, workspace_id, int(text)).id
    rows, _next = contacts.search(session, workspace_id, contacts.ContactFilter(q=text), limit=20)
    exact = [c for c in rows if (c.email or "") == text.lower()]
    if not (exact or rows):
        raise NotFound("no contact matches", "contact")
    return (exact or rows)[0].id


def preview_of(session: Session, ctx: UiContext, campaign: Campaign, label: str, who: str) -> Preview:
    """The variant rendered as the contact named by `who` (an email, a name, an id), or as the sample contact."""
    variants = {v.label: v for v in service.variants_of(session, campaign.id)}
    variant = variants.get(label) or next(iter(variants.values()), None)
    if variant is None:
        return Preview(label, who, None, _("The campaign has no content yet."))
    language = ctx.workspace.language
    try:
        contact_id = _find_contact(session, ctx.workspace.id, who)
    except NotFound:
        return Preview(variant.label, who, None, _("No contact matches %(who)s.") % {"who": who})
    context = (contexts(session, ctx.workspace.id, [contact_id])[contact_id] if contact_id is not None
               else sample_context(language))
    sender = senders.get_sender(session, ctx.workspace.id, campaign.sender_id) if campaign.sender_id else None
    context["sender"] = {"name": variant.from_name or (sender.name if sender else ""),
                         "email": sender.email if sender else "", "address": sender.address if sender else ""}
    context.setdefault("unsubscribe_url", "https://example.invalid/u/preview")
    context.setdefault("preferences_url", "https://example.invalid/p/preview")
    try:
        rendered = Renderer(service.content_of(campaign, variant, language)).render(context)
    except ValidationError as exc:
        return Preview(variant.label, who, None, _("The template has a mistake: %(detail)s") % {"detail": exc.text()})
    return Preview(variant.label, who, rendered)


@dataclass(frozen=True)
class AbReport:
    """An A/B test in plain words, with each variant's figures."""

    metric: str  # as a heading
    metric_words: str  # inside a sentence
    share: str
    wait_hours: str
    decided: bool
    summary: str
    arms: list[tuple[str, int, str]]  # variant, recipients, figure
    decide_at: datetime | None


def _figure(metric: str, value: float) -> str:
    return shekels(value) if metric == "revenue" else f"{value * 100:.1f}%"


def _method(metric: str) -> str:
    return _("Welch's test") if metric == "revenue" else _("two-proportion z-test")


def _summary(report: dict[str, Any], metric: str, decided: bool) -> str:
    arms = sorted(report.get("arms", []), key=lambda a: (-a["value"], a["variant"]))
    winner, p_value = report.get("winner", "A"), report.get("p_value")
    if len(arms) < 2 or p_value is None or not any(a["recipients"] for a in arms):
        if decided:
            return _("There were too few results to compare the variants, so the default variant %(winner)s "
                     "went to the rest of the audience.") % {"winner": winner}
        return _("There are not enough results yet to compare the variants.")
    best, runner_up = arms[0], arms[1]
    facts = {"winner": best["variant"], "metric": metric_words()[metric], "best": _figure(metric, best["value"]),
             "other": _figure(metric, runner_up["value"]), "runner_up": runner_up["variant"],
             # Isolated, so that "<" and the figure keep their order inside a Hebrew sentence.
             "p": "\u2066" + ("p < 0.001" if p_value < 0.001 else f"p = {p_value:.3f}") + "\u2069",
             "method": _method(metric), "default": winner}
    if report.get("significant"):
        if decided:
            return _("Variant %(winner)s won: %(metric)s %(best)s against %(other)s for variant %(runner_up)s. "
                     "The difference is significant (%(p)s, %(method)s), so variant %(winner)s went to the "
                     "rest of the audience.") % facts
        return _("So far variant %(winner)s leads: %(metric)s %(best)s against %(other)s for variant "
                 "%(runner_up)s, a significant difference (%(p)s, %(method)s).") % facts
    if decided:
        return _("No variant was significantly better (%(metric)s %(best)s for variant %(winner)s against "
                 "%(other)s for variant %(runner_up)s; %(p)s, %(method)s), so the default variant "
                 "%(default)s went to the rest of the audience.") % facts
    return _("So far variant %(winner)s leads (%(metric)s %(best)s against %(other)s for variant %(runner_up)s), "
             "but the difference is not significant (%(p)s, %(method)s).") % facts


def ab_report(session: Session, campaign: Campaign) -> AbReport | None:
    if not campaign.ab:
        return None
    ab = campaign.ab
    metric = ab.get("metric", "open_rate")
    decided = bool(ab.get("report"))
    if decided:
        report = ab["report"]
    elif campaign.started_at is not None:
        report = abtest.decide(abtest.arms(session, campaign, metric), metric).report()
    else:
        report = {}
    decide_at = None
    if ab.get("test_sent_at") and not decided:
        decide_at = datetime.fromisoformat(ab["test_sent_at"]) + timedelta(hours=float(ab.get("wait_hours", 4)))
    return AbReport(metric=metric_names().get(metric, metric), metric_words=metric_words().get(metric, metric),
                    share=_plain(round(float(ab.get("test_share", 0.2)) * 100, 2)),
                    wait_hours=_plain(ab.get("wait_hours", 4)), decided=decided,
                    summary=_summary(report, metric, decided) if report else "",
                    arms=[(a["variant"], a["recipients"], _figure(metric, a["value"])) for a in report.get("arms", [])],
                    decide_at=decide_at)


@dataclass(frozen=True)
class TestResult:
    sent: list[str]
    refused: list[str]
    problem: str = ""


def _test_problem(exc: KesherError, emails: list[str]) -> str:
    name = exc.field or ""
    match = re.match(r"^emails\[(\d+)\]$", name)
    if match and int(match.group(1)) < len(emails):
        return _("%(email)s is not an email address.") % {"email": emails[int(match.group(1))]}
    if name == "sender_id":
        return _("Choose a sender identity first.")
    return _("The template has a mistake: %(detail)s") % {"detail": exc.text()}


def run_test_send(request: Request, session: Session, ctx: UiContext, campaign: Campaign, form: FormData) -> TestResult:
    emails = [e for e in re.split(r"[\s,;]+", str(form.get("emails") or "")) if e]
    if not 1 <= len(emails) <= TEST_ADDRESSES:
        return TestResult([], [], _("Enter one to %(limit)s email addresses.") % {"limit": TEST_ADDRESSES})
    who = str(form.get("contact") or "")
    try:
        contact_id = _find_contact(session, ctx.workspace.id, who)
    except NotFound:
        return TestResult([], [], _("No contact matches %(who)s.") % {"who": who})
    try:
        sent = test_send(session, request.app.state.settings, ctx.workspace, campaign, emails, contact_id=contact_id,
                         variant=str(form.get("variant") or "A"))
    except KesherError as exc:
        return TestResult([], [], _test_problem(exc, emails))
    except OSError:
        return TestResult([], emails, _("The mail server could not be reached."))
    accepted = {address.lower() for address in sent}
    return TestResult(sent, [e for e in emails if e.lower() not in accepted])


# Pages -----------------------------------------------------------------------------------------------


def _editor_data(session: Session, ctx: UiContext, editor: Editor, errors: dict[str, str] | None) -> dict[str, Any]:
    ws = ctx.workspace.id
    identities = senders.list_senders(session, ws)
    return {"editor": editor, "values": editor.values, "errors": errors or {},
            "shown_variants": max(editor.variants, 2), "labels": service.LABELS, "senders": identities,
            "sender_options": [("", "—")] + [(str(s.id), f"{s.name} · {s.email}") for s in identities],
            "list_options": [(g.id, g.name, n) for g, n in groups.all_with_counts(session, ws, "list")],
            "segment_options": [(s.id, s.name, s.member_count) for s in list_segments(session, ws)],
            "count_text": audience_count(session, ws, editor.chosen), "metric_names": metric_names(),
            "period_options": [(str(seconds), name) for seconds, name in period_names().items()],
            "utm_keys": UTM_KEYS}


def _send_at_value(ctx: UiContext, campaign: Campaign) -> str:
    """The time the schedule input starts at: the one chosen, or an hour from now (workspace time)."""
    at = campaign.send_at if campaign.status == "scheduled" and campaign.send_at else utcnow() + timedelta(hours=1)
    return at.astimezone(ZoneInfo(ctx.workspace.timezone or "Asia/Jerusalem")).strftime("%Y-%m-%dT%H:%M")


def _live_data(session: Session, ctx: UiContext, campaign: Campaign, checks: list[Check] | None,
               send_error: str = "") -> dict[str, Any]:
    return {"campaign": campaign, "progress": service.progress(session, campaign), "ab": ab_report(session, campaign),
            "blocking": any(c.level == "error" for c in checks or []), "send_error": send_error,
            "refresh": REFRESH.get(campaign.status), "status_names": status_names(), "state_names": state_names(),
            "send_at_value": _send_at_value(ctx, campaign)}


def _checks(session: Session, ctx: UiContext, campaign: Campaign) -> list[Check]:
    try:
        return checks_of(session, ctx, campaign)
    except KesherError as exc:  # a stored variant that no longer renders (a field since deleted)
        return [Check("", "error", _("The template has a mistake: %(detail)s") % {"detail": exc.text()}, "html")]


def campaign_page(request: Request, ctx: UiContext, session: Session, campaign: Campaign, *,
                  editor: Editor | None = None, errors: dict[str, str] | None = None, send_error: str = "",
                  test: TestResult | None = None, status_code: int = 200) -> HTMLResponse:
    checks = _checks(session, ctx, campaign) if campaign.status in service.EDITABLE else []
    return render(request, "campaigns/campaign.html", ctx, status_code=status_code,
                  **_editor_data(session, ctx, editor or editor_of(session, campaign), errors),
                  **_live_data(session, ctx, campaign, checks, send_error),
                  checks=checks, level_names=level_names(), preview=preview_of(session, ctx, campaign, "A", ""),
                  variant_labels=[v.label for v in service.variants_of(session, campaign.id)], test=test,
                  editable=campaign.status in service.EDITABLE, saved=request.query_params.get("saved") == "1",
                  report=reports.report(session, campaign) if campaign.status not in ("draft", "scheduled") else None)


def _edit_variants(editor: Editor, form: FormData) -> bool:
    """The form's own buttons: add a variant, or remove one (nothing is saved); True when one was pressed."""
    action = str(form.get("edit") or "")
    shown = max(editor.variants, 2)
    if action == "add_variant":
        editor.variants = min(shown + 1, len(service.LABELS))
        editor.values["ab"] = "on"
        return True
    if action.startswith("remove_variant:") and action.rpartition(":")[2].isdigit():
        gone = int(action.rpartition(":")[2])
        if 2 <= gone < shown:
            for i in range(gone, shown - 1):
                for name in VARIANT_FIELDS:
                    editor.values[f"variants[{i}].{name}"] = editor.values.get(f"variants[{i + 1}].{name}", "")
            for name in VARIANT_FIELDS:
                editor.values.pop(f"variants[{shown - 1}].{name}", None)
            editor.variants = shown - 1
        return True
    return False


@router.get("/campaigns", response_class=HTMLResponse)
def campaigns_page(request: Request, ctx: UiContext = Depends(ui_context), session: Session = transaction) -> HTMLResponse:
    rows = [(c, service.progress(session, c)) for c in service.list_campaigns(session, ctx.workspace.id)]
    return render(request, "campaigns/index.html", ctx, rows=rows, status_names=status_names())


def _new_page(request: Request, ctx: UiContext, session: Session, editor: Editor, errors: dict[str, str] | None = None,
              status_code: int = 200) -> HTMLResponse:
    return render(request, "campaigns/new.html", ctx, status_code=status_code,
                  **_editor_data(session, ctx, editor, errors))


@router.get("/campaigns/new", response_class=HTMLResponse)
def new_campaign_page(request: Request, ctx: UiContext = Depends(ui_context),
                      session: Session = transaction) -> HTMLResponse:
    editor = blank_editor()
    identities = senders.list_senders(session, ctx.workspace.id)
    if len(identities) == 1:
        editor.values["sender_id"] = str(identities[0].id)
    return _new_page(request, ctx, session, editor)


@router.post("/campaigns", response_class=HTMLResponse)
def create_campaign(request: Request, form: FormData = Depends(form_data), ctx: UiContext = Depends(ui_context),
                    session: Session = transaction) -> Response:
    editor = read_editor(form)
    if _edit_variants(editor, form):
        return _new_page(request, ctx, session, editor)
    try:
        data = CampaignIn.model_validate(body_of(editor))
    except ModelError as exc:
        return _new_page(request, ctx, session, editor, model_errors(exc), 422)
    try:
        campaign = service.create_campaign(session, ctx.workspace, data, actor=ctx.actor)
    except KesherError as exc:
        session.rollback()
        return _new_page(request, ctx, session, editor, service_errors(exc), exc.status)
    return redirect(f"/campaigns/{campaign.id}?saved=1")


@router.post("/campaigns/audience", response_class=HTMLResponse)
def count_audience(form: FormData = Depends(form_data), ctx: UiContext = Depends(ui_context),
                   session: Session = transaction) -> HTMLResponse:
    """How many contacts the lists and segments chosen in the editor reach now (for HTMX)."""
    return HTMLResponse(escape(audience_count(session, ctx.workspace.id, read_editor(form).chosen)))


@router.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
def campaign_view(request: Request, campaign_id: int, ctx: UiContext = Depends(ui_context),
                  session: Session = transaction) -> HTMLResponse:
    return campaign_page(request, ctx, session, _campaign(session, ctx.workspace.id, campaign_id))


def _patch(campaign: Campaign, body: dict[str, Any]) -> CampaignPatch:
    """The whole form as a patch, leaving out an audience that did not change (a paused campaign's is fixed)."""
    chosen = {key: sorted(set(body["audience"][key])) for key in audience.KEYS}
    if chosen == {key: list((campaign.audience or {}).get(key, [])) for key in audience.KEYS}:
        body = {k: v for k, v in body.items() if k != "audience"}
    return CampaignPatch.model_validate(body)


@router.post("/campaigns/{campaign_id}", response_class=HTMLResponse)
def update_campaign(request: Request, campaign_id: int, form: FormData = Depends(form_data),
                    ctx: UiContext = Depends(ui_context), session: Session = transaction) -> Response:
    campaign = _campaign(session, ctx.workspace.id, campaign_id)
    editor = read_editor(form)
    if _edit_variants(editor, form):
        return campaign_page(request, ctx, session, campaign, editor=editor)
    body = body_of(editor)
    try:
        CampaignIn.model_validate(body)  # what a new campaign needs, a changed one needs too
        patch = _patch(campaign, body)
    except ModelError as exc:
        return campaign_page(request, ctx, session, campaign, editor=editor, errors=model_errors(exc), status_code=422)
    try:
        if campaign.ab and patch.ab is None:
            # The service checks new variants against the stored test: end the test first.
            service.update_campaign(session, ctx.workspace, campaign.id, CampaignPatch(ab=None), actor=ctx.actor)
        service.update_campaign(session, ctx.workspace, campaign.id, patch, actor=ctx.actor)
    except KesherError as exc:
        session.rollback()
        return campaign_page(request, ctx, session, campaign, editor=editor, errors=service_errors(exc, campaign),
                             status_code=exc.status)
    return redirect(f"/campaigns/{campaign.id}?saved=1")


@router.get("/campaigns/{campaign_id}/live", response_class=HTMLResponse)
def live_block(request: Request, campaign_id: int, ctx: UiContext = Depends(ui_context),
               session: Session = transaction) -> Response:
    """The status, the buttons the status allows, progress and the A/B test: refreshed while sending."""
    campaign = _campaign(session, ctx.workspace.id, campaign_id)
    if not is_partial(request):
        return redirect(f"/campaigns/{campaign.id}")
    checks = _checks(session, ctx, campaign) if campaign.status in ("draft", "scheduled") else []
    response = render(request, "campaigns/_live.html", ctx, **_live_data(session, ctx, campaign, checks))
    response.headers["Vary"] = "HX-Request"
    return response


@router.get("/campaigns/{campaign_id}/preview", response_class=HTMLResponse)
def preview_page(request: Request, campaign_id: int, variant: str = "A", contact: str = "",
                 ctx: UiContext = Depends(ui_context), session: Session = transaction) -> HTMLResponse:
    """A variant as a contact (an email, a name or an id) or as the sample contact would get it."""
    campaign = _campaign(session, ctx.workspace.id, campaign_id)
    data = {"campaign": campaign, "preview": preview_of(session, ctx, campaign, variant, contact),
            "variant_labels": [v.label for v in service.variants_of(session, campaign.id)]}
    response = render(request, "campaigns/_preview.html" if is_partial(request) else "campaigns/preview.html", ctx,
                      **data)
    response.headers["Vary"] = "HX-Request"
    return response


@router.post("/campaigns/{campaign_id}/test", response_class=HTMLResponse)
def send_test(request: Request, campaign_id: int, form: FormData = Depends(form_data),
              ctx: UiContext = Depends(ui_context), session: Session = transaction) -> HTMLResponse:
    campaign = _campaign(session, ctx.workspace.id, campaign_id)
    result = run_test_send(request, session, ctx, campaign, form)
    if is_partial(request):
        return render(request, "campaigns/_test_result.html", ctx, test=result)
    return campaign_page(request, ctx, session, campaign, test=result, status_code=422 if result.problem else 200)


def _action_problem(exc: KesherError, campaign: Campaign) -> str:
    if isinstance(exc, Conflict):
        return _not_now(campaign)
    if (exc.field or "") == "audience":
        return _("Nobody in the audience can be sent to: check consent, suppressions and addresses.")
    return _("A check that blocks sending fails: see the checks below.")


@router.post("/campaigns/{campaign_id}/send", response_class=HTMLResponse)
def send_campaign(request: Request, campaign_id: int, form: FormData = Depends(form_data),
                  ctx: UiContext = Depends(ui_context), session: Session = transaction) -> Response:
    """Send now, or at a time in the workspace's timezone."""
    campaign = _campaign(session, ctx.workspace.id, campaign_id)
    at, now = None, utcnow()
    if form.get("when") == "later":
        try:
            at = datetime.fromisoformat(str(form.get("send_at") or "")).replace(tzinfo=None)
        except ValueError:
            return campaign_page(request, ctx, session, campaign, send_error=_("Choose the date and time to send."),
                                 status_code=422)
        if (service.local_to_utc(ctx.workspace, at) or now) <= now:
            return campaign_page(request, ctx, session, campaign, status_code=422,
                                 send_error=_("That time has passed: choose a later one, or send now."))
    try:
        campaign = service.send(session, ctx.workspace, campaign.id, send_at=at, now=now, actor=ctx.actor)
    except KesherError as exc:
        session.rollback()
        return campaign_page(request, ctx, session, campaign, send_error=_action_problem(exc, campaign),
                             status_code=exc.status)
    start_pass_after_commit(session, request.app.state.settings, campaign)
    return redirect(f"/campaigns/{campaign.id}")


def _act(request: Request, ctx: UiContext, session: Session, campaign_id: int, action: str) -> Response:
    campaign = _campaign(session, ctx.workspace.id, campaign_id)
    try:
        campaign = getattr(service, action)(session, ctx.workspace, campaign.id, actor=ctx.actor)
    except KesherError as exc:
        session.rollback()
        return campaign_page(request, ctx, session, campaign, send_error=_action_problem(exc, campaign),
                             status_code=exc.status)
    if action == "resume":
        start_pass_after_commit(session, request.app.state.settings, campaign)
    return redirect(f"/campaigns/{campaign.id}")


@router.post("/campaigns/{campaign_id}/pause", response_class=HTMLResponse)
def pause_campaign(request: Request, campaign_id: int, ctx: UiContext = Depends(ui_context),
                   session: Session = transaction) -> Response:
    return _act(request, ctx, session, campaign_id, "pause")


@router.post("/campaigns/{campaign_id}/resume", response_class=HTMLResponse)
def resume_campaign(request: Request, campaign_id: int, ctx: UiContext = Depends(ui_context),
                    session: Session = transaction) -> Response:
    return _act(request, ctx, session, campaign_id, "resume")


@router.post("/campaigns/{campaign_id}/cancel", response_class=HTMLResponse)
def cancel_campaign(request: Request, campaign_id: int, ctx: UiContext = Depends(ui_context),
                    session: Session = transaction) -> Response:
    return _act(request, ctx, session, campaign_id, "cancel")


@router.post("/campaigns/{campaign_id}/delete", response_class=HTMLResponse)
def delete_campaign(request: Request, campaign_id: int, ctx: UiContext = Depends(ui_context),
                    session: Session = transaction) -> Response:
    campaign = _campaign(session, ctx.workspace.id, campaign_id)
    try:
        service.delete_campaign(session, ctx.workspace.id, campaign.id, actor=ctx.actor)
    except Conflict as exc:
        session.rollback()
        return campaign_page(request, ctx, session, campaign, status_code=exc.status,
                             send_error=_("Only a draft or a scheduled campaign can be deleted; one that went out is "
                                          "kept for its reports."))
    return redirect("/campaigns")
