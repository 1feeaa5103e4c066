"""The contacts JSON API (mounted at /api/v1): contacts, lists, tags, custom fields, consent, suppression.

Routes only translate: JSON in through the schemas, the services do the work in the caller's
workspace, JSON out. Errors are the services' own `KesherError`s, rendered as problem+json.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from pydantic import ValidationError as ShapeError
from sqlalchemy.orm import Session

from kesher.accounts.models import Workspace
from kesher.contacts import fields as field_service
from kesher.contacts import groups, service, suppression
from kesher.contacts.schemas import (
    BulkContactsIn, BulkResult, Channel, ConsentIn, ConsentOut, ContactDetailOut, ContactFields, ContactIds, ContactIn,
    ContactOut, ContactPage, FieldIn, FieldOut, ItemError, ListIn, ListOut, ListPatch, SuppressionIn,
    SuppressionOut, SuppressionPage, TagIn, TagOut, TagPatch,
)
from kesher.contacts.upsert import upsert_contacts
from kesher.errors import KesherError
from kesher.web.deps import ApiCaller, DbSession, api_caller
from kesher.db.base import MAX_ID
from kesher.web.problems import API_ERRORS, problem_doc

Responses = dict[int | str, dict[str, Any]]


router = APIRouter(responses=API_ERRORS)
CONFLICT: Responses = {409: problem_doc("Clashes with an existing record (named in `field`)")}
NO_CONTENT = status.HTTP_204_NO_CONTENT

Caller = Annotated[ApiCaller, Depends(api_caller)]
Db = DbSession
ContactId = Annotated[int, Path(ge=1, le=MAX_ID, description="A contact id")]
ListId = Annotated[int, Path(ge=1, le=MAX_ID, description="A list id")]
TagId = Annotated[int, Path(ge=1, le=MAX_ID, description="A tag id")]


def phone_region(request: Request) -> str:
    """Phone numbers without a country code are read in this region."""
    return str(request.app.state.settings.default_phone_region)


Region = Annotated[str, Depends(phone_region)]


def _source(caller: ApiCaller) -> str:
    # The same source `service.save_contact` records, so single and bulk writes look alike.
    return caller.actor.split(":")[0]


def _group_ids(session: Session, caller: ApiCaller, kind: str, refs: Iterable[int | str], field: str) -> list[int]:
    """Ids of the lists or tags a request names; a tag named by a new name is created."""
    ids = []
    for ref in refs:
        try:
            if isinstance(ref, str):
                group = groups.get_or_create(session, caller.workspace_id, kind, ref, actor=caller.actor)
            else:
                group = groups.get(session, caller.workspace_id, kind, ref)
        except KesherError as exc:
            raise exc.located(field) from None
        ids.append(group.id)
    return ids


def _detail(session: Session, caller: ApiCaller, contact_id: int) -> ContactDetailOut:
    return ContactDetailOut.of_detail(service.contact_detail(session, caller.workspace_id, contact_id))


# Contacts ---------------------------------------------------------------------------------------


@router.post(
    "/contacts", tags=["contacts"], summary="Create a contact, or merge into the one with the same identity",
    status_code=status.HTTP_201_CREATED, response_model=ContactDetailOut,
    responses={200: {"description": "Merged into an existing contact (same external_id, email or phone)",
                     "model": ContactDetailOut}, **CONFLICT},
)
def create_contact(
    body: ContactIn, response: Response, caller: Caller, session: Db, region: Region,
) -> ContactDetailOut:
    list_ids = _group_ids(session, caller, "list", body.lists, "lists")
    tag_ids = _group_ids(session, caller, "tag", body.tags, "tags")
    outcome = service.save_contact(session, caller.workspace_id, body.service_data(), actor=caller.actor, region=region)
    contact_id = outcome.contact_id
    assert contact_id is not None  # save_contact raises instead of returning an error outcome
    for kind, ids in (("list", list_ids), ("tag", tag_ids)):
        for group_id in ids:
            groups.add_contacts(session, caller.workspace_id, kind, group_id, [contact_id], actor=caller.actor)
    if outcome.status != "created":
        response.status_code = status.HTTP_200_OK
    return _detail(session, caller, contact_id)


@router.post(
    "/contacts/bulk", tags=["contacts"], summary="Create or merge many contacts at once",
    description="Up to 10,000 contacts a call. Each item is checked on its own: a bad one is reported by its "
                "index and never stops the others. Items naming the same person are merged.",
)
def bulk_upsert(body: BulkContactsIn, caller: Caller, session: Db, region: Region) -> BulkResult:
    list_ids = _group_ids(session, caller, "list", body.lists, "lists")
    tag_ids = _group_ids(session, caller, "tag", body.tags, "tags")
    known_fields = field_service.fields_by_key(session, caller.workspace_id)
    items, errors = [], []
    for index, raw in enumerate(body.contacts):
        try:
            data = ContactFields.model_validate(raw).service_data()
        except ShapeError as exc:
            errors += [ItemError(index=index, field=".".join(str(p) for p in e["loc"]) or None, message=e["msg"])
                       for e in exc.errors()]
            continue
        items.append(service.build_input(session, caller.workspace_id, index, data, region, known_fields))
    outcomes = upsert_contacts(session, caller.workspace_id, items, source=_source(caller),
                               list_ids=list_ids, tag_ids=tag_ids)
    errors += [ItemError(index=o.ref, field=e.field, message=e.message) for o in outcomes for e in o.errors]
    counts = Counter(o.status for o in outcomes)
    return BulkResult(created=counts["created"], updated=counts["updated"], unchanged=counts["unchanged"],
                      errors=sorted(errors, key=lambda e: e.index))


@router.get("/contacts", tags=["contacts"], summary="Search contacts, newest first, a page at a time")
def search_contacts(
    caller: Caller, session: Db,
    q: Annotated[str | None, Query(max_length=200, description="Name, email, phone or external id (prefix)")] = None,
    list_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Only members of this list")] = None,
    tag_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Only contacts with this tag")] = None,
    city: Annotated[str | None, Query(max_length=200)] = None,
    consent: Annotated[Channel | None, Query(description="Only contacts who granted consent on this channel")] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> ContactPage:
    # A list or tag that is not this workspace's is a 404, never an empty page.
    if list_id is not None:
        _group_ids(session, caller, "list", [list_id], "list_id")
    if tag_id is not None:
        _group_ids(session, caller, "tag", [tag_id], "tag_id")
    flt = service.ContactFilter(q=q, list_id=list_id, tag_id=tag_id, city=city, consent=consent)
    return contact_page(session, caller.workspace_id, flt, cursor, limit)


def contact_page(session: Session, workspace_id: int, flt: service.ContactFilter, cursor: str | None,
                 limit: int) -> ContactPage:
    """A page of contacts as the API shows them, custom values included (also a segment's members)."""
    rows, next_cursor = service.search(session, workspace_id, flt, cursor=cursor, limit=limit)
    values: dict[int, dict[str, Any]] = defaultdict(dict)
    custom = field_service.list_fields(session, workspace_id)
    for (contact_id, key), value in service.custom_values(session, [c.id for c in rows], custom).items():
        values[contact_id][key] = value
    return ContactPage(data=[ContactOut.of(c, values[c.id]) for c in rows], next_cursor=next_cursor)


@router.get("/contacts/{contact_id}", tags=["contacts"],
            summary="A contact with its custom fields, lists, tags and consent")
def get_contact(contact_id: ContactId, caller: Caller, session: Db) -> ContactDetailOut:
    return _detail(session, caller, contact_id)


@router.patch(
    "/contacts/{contact_id}", tags=["contacts"], summary="Change some fields of a contact", responses=CONFLICT,
    description="Only the fields sent change; `null` or an empty string clears one. A contact keeps at least "
                "one of email, phone and external_id.",
)
def update_contact(
    contact_id: ContactId, body: ContactFields, caller: Caller, session: Db, region: Region,
) -> ContactDetailOut:
    service.update_contact(session, caller.workspace_id, contact_id, body.service_data(), actor=caller.actor,
                           region=region)
    return _detail(session, caller, contact_id)


@router.delete("/contacts/{contact_id}", tags=["contacts"], summary="Delete a contact and everything about it",
               status_code=NO_CONTENT, response_class=Response)
def delete_contact(contact_id: ContactId, caller: Caller, session: Db) -> None:
    service.delete_contact(session, caller.workspace_id, contact_id, actor=caller.actor)


# Consent ----------------------------------------------------------------------------------------


@router.get("/contacts/{contact_id}/consent", tags=["consent"], summary="A contact's consent by channel")
def get_consent(contact_id: ContactId, caller: Caller, session: Db) -> dict[str, ConsentOut]:
    return _detail(session, caller, contact_id).consent


@router.put("/contacts/{contact_id}/consent/{channel}", tags=["consent"],
            summary="Record a consent decision with its proof")
def put_consent(contact_id: ContactId, channel: Annotated[Channel, Path()], body: ConsentIn, caller: Caller,
                session: Db) -> ConsentOut:
    consent = service.set_consent(
        session, caller.workspace_id, contact_id, channel, body.status, source=body.source,
        ip=str(body.ip) if body.ip else None, text_shown=body.text_shown, actor=caller.actor,
    )
    return ConsentOut.model_validate(consent)


# Lists ------------------------------------------------------------------------------------------


def _topic_ids(session: Session, caller: ApiCaller) -> list[int]:
    return groups.topic_ids(session.get_one(Workspace, caller.workspace_id))


def _list_out(session: Session, caller: ApiCaller, group: Any) -> ListOut:
    members = service.count(session, caller.workspace_id, service.ContactFilter(list_id=group.id))
    return ListOut.of(group, members, group.id in _topic_ids(session, caller))


@router.get("/lists", tags=["lists"], summary="All lists with their member counts")
def all_lists(caller: Caller, session: Db) -> list[ListOut]:
    topics = set(_topic_ids(session, caller))
    return [ListOut.of(g, n, g.id in topics) for g, n in groups.all_with_counts(session, caller.workspace_id, "list")]


@router.post("/lists", tags=["lists"], summary="Create a list", status_code=status.HTTP_201_CREATED,
             responses=CONFLICT)
def create_list(body: ListIn, caller: Caller, session: Db) -> ListOut:
    group = groups.create(session, caller.workspace_id, "list", body.name, description=body.description,
                          actor=caller.actor)
    if body.topic:
        groups.offer_as_topic(session, caller.workspace_id, group.id, True, actor=caller.actor)
    return ListOut.of(group, 0, body.topic)


@router.get("/lists/{list_id}", tags=["lists"], summary="A list with its member count")
def get_list(list_id: ListId, caller: Caller, session: Db) -> ListOut:
    return _list_out(session, caller, groups.get(session, caller.workspace_id, "list", list_id))


@router.patch("/lists/{list_id}", tags=["lists"],
              summary="Rename a list, change its description, or offer it as a topic", responses=CONFLICT)
def update_list(list_id: ListId, body: ListPatch, caller: Caller, session: Db) -> ListOut:
    group = groups.get(session, caller.workspace_id, "list", list_id)
    if body.name is not None:
        group = groups.rename(session, caller.workspace_id, "list", list_id, body.name, actor=caller.actor)
    if body.description is not None:
        group = groups.describe(session, caller.workspace_id, list_id, body.description, actor=caller.actor)
    if body.topic is not None:
        group = groups.offer_as_topic(session, caller.workspace_id, list_id, body.topic, actor=caller.actor)
    return _list_out(session, caller, group)


@router.delete("/lists/{list_id}", tags=["lists"], summary="Delete a list (its contacts stay)",
               status_code=NO_CONTENT, response_class=Response)
def delete_list(list_id: ListId, caller: Caller, session: Db) -> None:
    groups.remove(session, caller.workspace_id, "list", list_id, actor=caller.actor)


@router.post("/lists/{list_id}/contacts", tags=["lists"], summary="Add contacts to a list")
def add_to_list(list_id: ListId, body: ContactIds, caller: Caller, session: Db) -> ListOut:
    groups.add_contacts(session, caller.workspace_id, "list", list_id, body.contact_ids, actor=caller.actor)
    return _list_out(session, caller, groups.get(session, caller.workspace_id, "list", list_id))


@router.delete("/lists/{list_id}/contacts", tags=["lists"], summary="Remove contacts from a list")
def remove_from_list(list_id: ListId, body: ContactIds, caller: Caller, session: Db) -> ListOut:
    groups.remove_contacts(session, caller.workspace_id, "list", list_id, body.contact_ids, actor=caller.actor)
    return _list_out(session, caller, groups.get(session, caller.workspace_id, "list", list_id))


# Tags -------------------------------------------------------------------------------------------


def _tag_out(session: Session, caller: ApiCaller, group: Any) -> TagOut:
    members = service.count(session, caller.workspace_id, service.ContactFilter(tag_id=group.id))
    return TagOut.of(group, members)


@router.get("/tags", tags=["tags"], summary="All tags with their member counts")
def all_tags(caller: Caller, session: Db) -> list[TagOut]:
    return [TagOut.of(g, n) for g, n in groups.all_with_counts(session, caller.workspace_id, "tag")]


@router.post("/tags", tags=["tags"], summary="Create a tag", status_code=status.HTTP_201_CREATED, responses=CONFLICT)
def create_tag(body: TagIn, caller: Caller, session: Db) -> TagOut:
    return TagOut.of(groups.create(session, caller.workspace_id, "tag", body.name, actor=caller.actor), 0)


@router.get("/tags/{tag_id}", tags=["tags"], summary="A tag with its member count")
def get_tag(tag_id: TagId, caller: Caller, session: Db) -> TagOut:
    return _tag_out(session, caller, groups.get(session, caller.workspace_id, "tag", tag_id))


@router.patch("/tags/{tag_id}", tags=["tags"], summary="Rename a tag", responses=CONFLICT)
def update_tag(tag_id: TagId, body: TagPatch, caller: Caller, session: Db) -> TagOut:
    return _tag_out(session, caller, groups.rename(session, caller.workspace_id, "tag", tag_id, body.name,
                                                   actor=caller.actor))


@router.delete("/tags/{tag_id}", tags=["tags"], summary="Delete a tag (its contacts stay)",
               status_code=NO_CONTENT, response_class=Response)
def delete_tag(tag_id: TagId, caller: Caller, session: Db) -> None:
    groups.remove(session, caller.workspace_id, "tag", tag_id, actor=caller.actor)


@router.post("/tags/{tag_id}/contacts", tags=["tags"], summary="Tag contacts")
def add_tag(tag_id: TagId, body: ContactIds, caller: Caller, session: Db) -> TagOut:
    groups.add_contacts(session, caller.workspace_id, "tag", tag_id, body.contact_ids, actor=caller.actor)
    return _tag_out(session, caller, groups.get(session, caller.workspace_id, "tag", tag_id))


@router.delete("/tags/{tag_id}/contacts", tags=["tags"], summary="Untag contacts")
def remove_tag(tag_id: TagId, body: ContactIds, caller: Caller, session: Db) -> TagOut:
    groups.remove_contacts(session, caller.workspace_id, "tag", tag_id, body.contact_ids, actor=caller.actor)
    return _tag_out(session, caller, groups.get(session, caller.workspace_id, "tag", tag_id))


# Custom fields ----------------------------------------------------------------------------------


@router.get("/fields", tags=["custom fields"], summary="All custom fields")
def all_fields(caller: Caller, session: Db) -> list[FieldOut]:
    return [FieldOut.model_validate(f) for f in field_service.list_fields(session, caller.workspace_id)]


@router.post("/fields", tags=["custom fields"], summary="Create a custom field", status_code=status.HTTP_201_CREATED,
             responses=CONFLICT)
def create_field(body: FieldIn, caller: Caller, session: Db) -> FieldOut:
    field = field_service.create_field(session, caller.workspace_id, body.key, body.label, body.type, body.choices,
                                       actor=caller.actor)
    return FieldOut.model_validate(field)


@router.get("/fields/{field_id}", tags=["custom fields"], summary="A custom field")
def get_field(field_id: Annotated[int, Path(ge=1, le=MAX_ID)], caller: Caller, session: Db) -> FieldOut:
    return FieldOut.model_validate(field_service.get_field(session, caller.workspace_id, field_id))


@router.delete("/fields/{field_id}", tags=["custom fields"], summary="Delete a custom field and all its values",
               status_code=NO_CONTENT, response_class=Response)
def delete_field(field_id: Annotated[int, Path(ge=1, le=MAX_ID)], caller: Caller, session: Db) -> None:
    field_service.delete_field(session, caller.workspace_id, field_id, actor=caller.actor)


# Suppression ------------------------------------------------------------------------------------


@router.get("/suppressions", tags=["suppressions"], summary="Suppressed addresses, oldest first, a page at a time")
def all_suppressions(
    caller: Caller, session: Db,
    channel: Annotated[Channel | None, Query(description="Only this channel")] = None,
    after_id: Annotated[int, Query(ge=0, description="`next_after_id` of the previous page")] = 0,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 100,
) -> SuppressionPage:
    rows = suppression.list_suppressions(session, caller.workspace_id, channel, after_id=after_id, limit=limit + 1)
    page = rows[:limit]
    return SuppressionPage(data=[SuppressionOut.model_validate(r) for r in page],
                           next_after_id=page[-1].id if len(rows) > limit else None)


@router.post("/suppressions", tags=["suppressions"], summary="Never send to this address on this channel",
             status_code=status.HTTP_201_CREATED)
def add_suppression(body: SuppressionIn, caller: Caller, session: Db, region: Region) -> SuppressionOut:
    row = suppression.suppress(session, caller.workspace_id, body.channel, body.address, body.reason, note=body.note,
                               actor=caller.actor, region=region)
    return SuppressionOut.model_validate(row)


@router.delete("/suppressions/{suppression_id}", tags=["suppressions"], summary="Allow an address again",
               status_code=NO_CONTENT, response_class=Response)
def delete_suppression(suppression_id: Annotated[int, Path(ge=1, le=MAX_ID)], caller: Caller, session: Db) -> None:
    suppression.unsuppress(session, caller.workspace_id, suppression_id, actor=caller.actor)
