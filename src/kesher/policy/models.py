"""Tables of the policy package: what each contact asked for on the preference page."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from kesher.db.base import Base, JSONData, UTCDateTime, utcnow


class ContactPreference(Base):
    """"Send me less" and the topics (lists) a contact chose; no row = no wish expressed."""

    __tablename__ = "contact_preferences"

    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    less_mail: Mapped[bool] = mapped_column(Boolean, default=False)
    topics: Mapped[list[int]] = mapped_column(JSONData, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
