"""Request and response bodies of the contacts API.

Values are checked where the rest of Kesher checks them (normalize, fields, service), so an
import, the UI and the API give the same message for the same mistake; these models only fix
the shape of the JSON and document it.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, IPvAnyAddress, StrictBool, WithJsonSchema

from kesher.contacts.models import CHANNELS, CONSENT_STATUSES, FIELD_TYPES, Contact, ContactList, Tag
from kesher.contacts.service import ContactDetail
from kesher.contacts.suppression import REASONS
from kesher.db.base import MAX_ID

MAX_BULK = 10_000


def _one_of(allowed: tuple[str, ...]) -> Any:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value

    return AfterValidator(check)


Channel = Annotated[str, _one_of(CHANNELS), Field(json_schema_extra={"enum": list(CHANNELS)})]
ConsentStatus = Annotated[str, _one_of(CONSENT_STATUSES), Field(json_schema_extra={"enum": list(CONSENT_STATUSES)})]
FieldValueOut = str | float | date | bool | None


class _In(BaseModel):
    # Numbers are welcome where text is expected: phones and external ids often arrive as JSON numbers.
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# Contacts ---------------------------------------------------------------------------------------


class ContactFields(_In):
    """A contact's built-in fields, custom fields and consent; fields left out are left as stored."""

    email: str | None = Field(None, examples=["dana@example.co.il"])
    phone: str | None = Field(None, description="Any common format; stored as E.164.", examples=["050-1234567"])
    external_id: str | None = Field(None, description="Your own id for this person (shop customer id).")
    first_name: str | None = Field(None, examples=["דנה"])
    last_name: str | None = None
    gender: str | None = Field(None, description="female, male or other (Hebrew accepted).")
    birthday: str | None = Field(None, description="YYYY-MM-DD or DD/MM/YYYY.", examples=["1990-05-17"])
    city: str | None = Field(None, examples=["חיפה"])
    language: str | None = Field(None, description="he or en.")
    timezone: str | None = Field(None, examples=["Asia/Jerusalem"])
    fields: dict[str, Any] = Field(default_factory=dict, description="Custom field values by field key.")
    consent: dict[str, ConsentStatus] = Field(
        default_factory=dict, description=f"Consent status by channel ({', '.join(CHANNELS)}).",
        examples=[{"email": "granted"}],
    )

    def service_data(self) -> dict[str, Any]:
        """The dict the contact services take: only what the caller sent, so absent fields stay as stored."""
        return self.model_dump(exclude_unset=True)


class ContactIn(ContactFields):
    lists: list[int] = Field(default_factory=list, description="Ids of lists to add the contact to.")
    tags: list[int | str] = Field(
        default_factory=list, description="Tags by id, or by name (created when missing).", examples=[["vip"]],
    )

    def service_data(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True, exclude={"lists", "tags"})


class GroupRef(_Out):
    id: int
    name: str


class ConsentOut(_Out):
    channel: str
    status: str
    source: str
    changed_at: datetime
    ip: str | None
    text_shown: str | None


class ContactOut(BaseModel):
    id: int
    email: str | None
    phone: str | None
    external_id: str | None
    first_name: str | None
    last_name: str | None
    gender: str | None
    birthday: date | None
    city: str | None
    language: str
    timezone: str
    source: str | None
    created_at: datetime
    updated_at: datetime
    fields: dict[str, FieldValueOut] = Field(description="Custom field values by field key.")

    @classmethod
    def of(cls, contact: Contact, fields: dict[str, Any], **extra: Any) -> Self:
        return cls(
            id=contact.id, email=contact.email, phone=contact.phone, external_id=contact.external_id,
            first_name=contact.first_name, last_name=contact.last_name, gender=contact.gender,
            birthday=contact.birthday, city=contact.city, language=contact.language, timezone=contact.timezone,
            source=contact.source, created_at=contact.created_at, updated_at=contact.updated_at, fields=fields,
            **extra,
        )


class ContactDetailOut(ContactOut):
    lists: list[GroupRef]
    tags: list[GroupRef]
    consent: dict[str, ConsentOut] = Field(description="Consent by channel, with its proof.")

    @classmethod
    def of_detail(cls, detail: ContactDetail) -> Self:
        return cls.of(
            detail.contact, detail.fields,
            lists=[GroupRef.model_validate(g) for g in detail.lists],
            tags=[GroupRef.model_validate(t) for t in detail.tags],
            consent={ch: ConsentOut.model_validate(c) for ch, c in detail.consent.items()},
        )


class ContactPage(BaseModel):
    data: list[ContactOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class BulkContactsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Items are read one by one in the route, so one malformed item is reported at its index
    # instead of rejecting the whole call.
    contacts: list[Annotated[Any, WithJsonSchema({"$ref": "#/components/schemas/ContactFields"})]] = Field(
        max_length=MAX_BULK, description=f"Up to {MAX_BULK:,} contacts, each shaped like ContactFields.",
    )
    lists: list[int] = Field(default_factory=list, description="Ids of lists every stored contact joins.")
    tags: list[int | str] = Field(default_factory=list, description="Tags (ids or names) every stored contact gets.")


class ItemError(BaseModel):
    index: int
    field: str | None
    message: str


class BulkResult(BaseModel):
    created: int
    updated: int
    unchanged: int
    errors: list[ItemError]


# Lists and tags ---------------------------------------------------------------------------------


TOPIC = "Offered as a topic on the preference page of the workspace's messages."


class ListIn(_In):
    name: str = Field(examples=["לקוחות VIP"])
    description: str = ""
    topic: StrictBool = Field(False, description=f"{TOPIC} A new topic comes after the others.")


class ListPatch(_In):
    name: str | None = None
    description: str | None = None
    topic: StrictBool | None = Field(None, description=f"{TOPIC} A new topic comes after the others.")


class ListOut(BaseModel):
    id: int
    name: str
    description: str
    topic: bool = Field(description=TOPIC)
    member_count: int
    created_at: datetime

    @classmethod
    def of(cls, group: ContactList, member_count: int, topic: bool) -> ListOut:
        return cls(id=group.id, name=group.name, description=group.description, topic=topic,
                   member_count=member_count, created_at=group.created_at)


class TagIn(_In):
    name: str = Field(examples=["vip"])


class TagPatch(_In):
    name: str


class TagOut(BaseModel):
    id: int
    name: str
    member_count: int
    created_at: datetime

    @classmethod
    def of(cls, group: Tag, member_count: int) -> TagOut:
        return cls(id=group.id, name=group.name, member_count=member_count, created_at=group.created_at)


class ContactIds(BaseModel):
    contact_ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(min_length=1, max_length=MAX_BULK)


# Custom fields ----------------------------------------------------------------------------------


class FieldIn(_In):
    key: str = Field(description="a-z, 0-9 and _, starting with a letter.", examples=["loyalty_level"])
    label: str = Field(examples=["רמת מועדון"])
    type: str = Field(json_schema_extra={"enum": list(FIELD_TYPES)})
    choices: list[str] = Field(default_factory=list, description="The allowed values of a choice field.")


class FieldOut(_Out):
    id: int
    key: str
    label: str
    type: str
    choices: list[str]
    created_at: datetime


# Consent and suppression ------------------------------------------------------------------------


class ConsentIn(_In):
    status: ConsentStatus
    source: str = Field(min_length=1, max_length=100, description="Where it was given.", examples=["checkout form"])
    ip: IPvAnyAddress | None = Field(None, description="The address the person acted from.")
    text_shown: str | None = Field(None, max_length=10_000, description="The wording the person agreed to.")


class SuppressionIn(_In):
    channel: Channel
    address: str = Field(examples=["dana@example.co.il"])
    reason: str = Field("manual", json_schema_extra={"enum": list(REASONS)})
    note: str = Field("", max_length=1000)


class SuppressionOut(_Out):
    id: int
    channel: str
    address: str
    reason: str
    note: str
    created_at: datetime


class SuppressionPage(BaseModel):
    data: list[SuppressionOut]
    next_after_id: int | None = Field(description="Pass as `after_id` for the next page; null on the last page.")
