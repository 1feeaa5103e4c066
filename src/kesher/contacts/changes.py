"""What packages built on contacts learn when contacts change, and what they can veto.

Segments read contacts, so they import this package; these calls back go through late imports.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session


def contacts_changed(session: Session, workspace_id: int, contact_ids: Iterable[int]) -> None:
    """Tell segments that these contacts' own data changed, so membership follows at once."""
    from kesher.segments import membership

    membership.contacts_changed(session, workspace_id, contact_ids)


def refuse_if_segments_use(session: Session, workspace_id: int, kind: str, ref_id: int | None, name: str) -> None:
    """A list, tag or custom field a segment reads cannot be deleted from under it (Conflict names the segments).

    With `ref_id` None, only segments that name it object: what a rename would break.
    """
    from kesher.segments.service import refuse_if_used

    refuse_if_used(session, workspace_id, kind, ref_id, name)
