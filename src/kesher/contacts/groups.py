"""Static lists and tags: named groups of contacts that change only when someone changes them.

A workspace may offer some of its lists as topics: recipients choose among them on the preference
page (`messages.preferences`). They are kept, in the order the page shows them, as list ids in
`workspace.settings["preferences"]["topic_lists"]`; only this module writes that key.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from kesher.accounts.models import Workspace
from kesher.accounts.service import audit
from kesher.contacts.models import Contact, ContactList, ContactTag, ListMembership, Tag
from kesher.contacts.changes import contacts_changed, refuse_if_segments_use
from kesher.db.base import utcnow
from kesher.db.upsert import insert_ignore, one_of, same_workspace
from kesher.errors import Conflict, NotFound, ValidationError

# One table pair per kind of group; the functions below serve both.
KINDS: dict[str, tuple[Any, Any, str]] = {
    "list": (ContactList, ListMembership, "list_id"),
    "tag": (Tag, ContactTag, "tag_id"),
}
NAME_LIMIT = {"list": 200, "tag": 100}
DESCRIPTION_LIMIT = 1000


def _clean_name(kind: str, name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise ValidationError("must not be empty", "name")
    if len(name) > NAME_LIMIT[kind]:
        raise ValidationError("is longer than {limit:,} characters", "name", limit=NAME_LIMIT[kind])
    return name


def _clean_description(description: str) -> str:
    description = description.strip()
    if len(description) > DESCRIPTION_LIMIT:
        raise ValidationError("is longer than {limit} characters", "description", limit=DESCRIPTION_LIMIT)
    return description


def _taken(kind: str, name: str) -> Conflict:
    if kind == "list":
        return Conflict("a list named {name!r} exists", "name", name=name)
    return Conflict("a tag named {name!r} exists", "name", name=name)


def create(session: Session, workspace_id: int, kind: str, name: str, *, description: str = "", actor: str = "system") -> Any:
    model = KINDS[kind][0]
    name = _clean_name(kind, name)
    if session.scalar(select(model.id).where(model.workspace_id == workspace_id, model.name == name)) is not None:
        raise _taken(kind, name)
    group = model(workspace_id=workspace_id, name=name)
    if kind == "list":
        group.description = _clean_description(description)
    session.add(group)
    session.flush()
    audit(session, workspace_id, actor, f"{kind}.created", kind, group.id, {"name": name})
    return group


def get_or_create(session: Session, workspace_id: int, kind: str, name: str, *, actor: str = "system") -> Any:
    model = KINDS[kind][0]
    name = _clean_name(kind, name)
    group = session.scalar(select(model).where(model.workspace_id == workspace_id, model.name == name))
    return group if group is not None else create(session, workspace_id, kind, name, actor=actor)


def get(session: Session, workspace_id: int, kind: str, group_id: int) -> Any:
    model = KINDS[kind][0]
    group = session.scalar(select(model).where(model.workspace_id == workspace_id, model.id == group_id))
    if group is None:
        if kind == "list":
            raise NotFound("no list {id}", "id", id=group_id)
        raise NotFound("no tag {id}", "id", id=group_id)
    return group


def rename(session: Session, workspace_id: int, kind: str, group_id: int, name: str, *, actor: str = "system") -> Any:
    group = get(session, workspace_id, kind, group_id)
    model = KINDS[kind][0]
    name = _clean_name(kind, name)
    clash = session.scalar(select(model.id).where(model.workspace_id == workspace_id, model.name == name, model.id != group_id))
    if clash is not None:
        raise _taken(kind, name)
    if name != group.name:
        refuse_if_segments_use(session, workspace_id, kind, None, group.name)
    audit(session, workspace_id, actor, f"{kind}.renamed", kind, group.id, {"name": [group.name, name]})
    group.name = name
    session.flush()
    return group


def describe(session: Session, workspace_id: int, list_id: int, description: str, *, actor: str = "system") -> Any:
    """Change a list's description (tags have none)."""
    group = get(session, workspace_id, "list", list_id)
    description = _clean_description(description)
    if description != group.description:
        audit(session, workspace_id, actor, "list.described", "list", group.id,
              {"description": [group.description, description]})
        group.description = description
        session.flush()
    return group


def remove(session: Session, workspace_id: int, kind: str, group_id: int, *, actor: str = "system") -> None:
    group = get(session, workspace_id, kind, group_id)
    refuse_if_segments_use(session, workspace_id, kind, group.id, group.name)
    changes: dict[str, Any] = {"name": group.name}
    # SQLite may give a deleted list's id to the next list created: it must not inherit the topic.
    if kind == "list" and _set_topic(session, workspace_id, group.id, False):
        changes["topic"] = [True, False]
    audit(session, workspace_id, actor, f"{kind}.deleted", kind, group.id, changes)
    session.delete(group)
    session.flush()


def topic_ids(workspace: Workspace) -> list[int]:
    """Ids of the lists the workspace offers as topics, in the order the preference page shows them."""
    wanted = ((workspace.settings or {}).get("preferences") or {}).get("topic_lists") or []
    return list(dict.fromkeys(i for i in wanted if type(i) is int))


def offer_as_topic(session: Session, workspace_id: int, list_id: int, topic: bool, *, actor: str = "system") -> Any:
    """Offer the list on the preference page, after the topics offered already, or stop offering it."""
    group = get(session, workspace_id, "list", list_id)
    if _set_topic(session, workspace_id, group.id, topic):
        audit(session, workspace_id, actor, "list.topic_changed", "list", group.id, {"topic": [not topic, topic]})
    return group


def _set_topic(session: Session, workspace_id: int, list_id: int, topic: bool) -> bool:
    """Add the list to the workspace's topics or take it out; False when it was so already."""
    # Locked and read afresh: two lists offered at once must both end up in the topics.
    workspace = session.scalars(select(Workspace).where(Workspace.id == workspace_id).with_for_update()
                                .execution_options(populate_existing=True)).one()
    ids = topic_ids(workspace)
    if (list_id in ids) == topic:
        return False
    ids = [*ids, list_id] if topic else [i for i in ids if i != list_id]
    settings = workspace.settings or {}
    workspace.settings = {**settings, "preferences": {**(settings.get("preferences") or {}), "topic_lists": ids}}
    session.flush()
    return True


def all_with_counts(session: Session, workspace_id: int, kind: str) -> list[tuple[Any, int]]:
    model, member, key = KINDS[kind]
    counts = (select(getattr(member, key).label("gid"), func.count().label("n"))
              .where(member.workspace_id == workspace_id).group_by(getattr(member, key)).subquery())
    stmt = (select(model, func.coalesce(counts.c.n, 0)).outerjoin(counts, counts.c.gid == model.id)
            .where(model.workspace_id == workspace_id).order_by(model.name))
    return [(g, n) for g, n in session.execute(stmt)]


def members_of(kind: str, group_ids: Iterable[int]) -> Any:
    """A condition: `contacts.id` is a member of any of these lists (or tags)."""
    _, member, key = KINDS[kind]
    return Contact.id.in_(select(member.contact_id).where(getattr(member, key).in_(list(group_ids))))


def add_contacts(
    session: Session, workspace_id: int, kind: str, group_id: int, contact_ids: Iterable[int], *, actor: str = "system",
) -> int:
    """Add contacts (of this workspace only) to the group; returns how many ids were valid."""
    _, member, key = KINDS[kind]
    get(session, workspace_id, kind, group_id)
    ids = list(set(contact_ids))
    valid = list(session.scalars(select(Contact.id).where(same_workspace(session, Contact.workspace_id, workspace_id),
                                                          one_of(session, Contact.id, ids))))
    if len(valid) != len(ids):
        missing = sorted(set(ids) - set(valid))[:5]
        raise NotFound("no contacts {ids} in this workspace", "contact_ids", ids=str(missing))
    now = utcnow()
    insert_ignore(session, member.__table__,
                  [{key: group_id, "contact_id": cid, "workspace_id": workspace_id, "added_at": now} for cid in valid],
                  (key, "contact_id"))
    audit(session, workspace_id, actor, f"{kind}.members_added", kind, group_id, {"count": len(valid)})
    contacts_changed(session, workspace_id, valid)
    return len(valid)


def remove_contacts(
    session: Session, workspace_id: int, kind: str, group_id: int, contact_ids: Iterable[int], *, actor: str = "system",
) -> None:
    _, member, key = KINDS[kind]
    get(session, workspace_id, kind, group_id)
    removed = session.scalars(delete(member).where(getattr(member, key) == group_id,
                                                   member.workspace_id == workspace_id,
                                                   member.contact_id.in_(list(contact_ids))).returning(member.contact_id)).all()
    audit(session, workspace_id, actor, f"{kind}.members_removed", kind, group_id, {})
    contacts_changed(session, workspace_id, removed)
