"""Workspaces, users, API keys and the audit log."""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from kesher.accounts.models import ApiKey, AuditEntry, Membership, User, Workspace
from kesher.db.base import utcnow
from kesher.errors import AuthError, Conflict, NotFound, ValidationError

_hasher = PasswordHasher()
KEY_PREFIX = "ksr_"
ROLES = ("admin", "member")
MIN_PASSWORD = 8
_SLUG = re.compile(r"^(?=.{1,100}$)[a-z][a-z0-9]*(-[a-z0-9]+)*$")  # a letter first: digits mean an id


def _slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "workspace"


def create_workspace(
    session: Session, name: str, *, timezone: str = "Asia/Jerusalem", language: str = "he", slug: str | None = None,
) -> Workspace:
    """A new workspace; its slug comes from the name (made unique) unless `slug` is given, which must be free."""
    name = name.strip()
    if not name:
        raise ValidationError("must not be empty", "name")
    if slug is None:
        base = _slugify(name)
        slug, n = base, 1
        while session.scalar(select(Workspace.id).where(Workspace.slug == slug)) is not None:
            n += 1
            slug = f"{base}-{n}"
    elif not _SLUG.match(slug):
        raise ValidationError("must start with a letter and hold only a-z, 0-9 and single dashes (100 at most)", "slug")
    elif session.scalar(select(Workspace.id).where(Workspace.slug == slug)) is not None:
        raise Conflict("a workspace {slug!r} exists", "slug", slug=slug)
    workspace = Workspace(name=name, slug=slug, timezone=timezone, language=language)
    session.add(workspace)
    session.flush()
    return workspace


def get_workspace(session: Session, ref: str | int) -> Workspace:
    """A workspace by id or slug."""
    stmt = select(Workspace)
    if isinstance(ref, int) or str(ref).isdigit():
        stmt = stmt.where(Workspace.id == int(ref))
    else:
        stmt = stmt.where(Workspace.slug == ref)
    workspace = session.scalar(stmt)
    if workspace is None:
        raise NotFound("no workspace {ref!r}", "workspace", ref=ref)
    return workspace


def create_user(
    session: Session, email: str, password: str, *, name: str = "", workspace: Workspace | None = None,
    role: str = "admin", language: str = "he",
) -> User:
    email = email.strip().lower()
    if "@" not in email:
        raise ValidationError("is not an email address", "email")
    if len(password) < MIN_PASSWORD:
        raise ValidationError("must be at least {least} characters", "password", least=MIN_PASSWORD)
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict("a user with this email exists", "email")
    user = User(email=email, name=name, password_hash=_hasher.hash(password), language=language)
    session.add(user)
    session.flush()
    if workspace is not None:
        add_member(session, user, workspace, role)
    return user


def get_user(session: Session, email: str) -> User:
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise NotFound("no user {email!r}", "email", email=email)
    return user


def set_password(session: Session, email: str, password: str) -> User:
    """Give the user with this email a new password."""
    if len(password) < MIN_PASSWORD:
        raise ValidationError("must be at least {least} characters", "password", least=MIN_PASSWORD)
    user = get_user(session, email)
    user.password_hash = _hasher.hash(password)
    session.flush()
    return user


def add_member(session: Session, user: User, workspace: Workspace, role: str = "admin") -> None:
    if role not in ROLES:
        raise ValidationError("must be one of {choices}", "role", choices=", ".join(ROLES))
    if session.get(Membership, (user.id, workspace.id)) is None:
        session.add(Membership(user_id=user.id, workspace_id=workspace.id, role=role))
        session.flush()


def authenticate_user(session: Session, email: str, password: str) -> User:
    user = session.scalar(select(User).where(User.email == email.strip().lower(), User.is_active.is_(True)))
    try:
        if user is None:
            raise VerificationError
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        raise AuthError("wrong email or password", "password") from None
    return user


def user_workspaces(session: Session, user_id: int) -> list[Workspace]:
    stmt = (
        select(Workspace).join(Membership, Membership.workspace_id == Workspace.id)
        .where(Membership.user_id == user_id).order_by(Workspace.name)
    )
    return list(session.scalars(stmt))


def _key_hash(secret: str) -> str:
    # Keys are 256 random bits, so a fast hash is as safe as a slow one and costs nothing per request.
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(session: Session, workspace: Workspace, name: str) -> tuple[ApiKey, str]:
    """A new key; the secret is returned once and only its hash is kept."""
    if not name.strip():
        raise ValidationError("must not be empty", "name")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(workspace_id=workspace.id, name=name.strip(), prefix=secret[:10], key_hash=_key_hash(secret))
    session.add(key)
    session.flush()
    audit(session, workspace.id, "system", "api_key.created", "api_key", key.id, {"name": key.name})
    return key, secret


def authenticate_api_key(session: Session, secret: str) -> ApiKey:
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == _key_hash(secret), ApiKey.revoked_at.is_(None)))
    if key is None:
        raise AuthError("invalid or revoked API key", "Authorization")
    now = utcnow()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        key.last_used_at = now
    return key


def list_api_keys(session: Session, workspace_id: int) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).where(ApiKey.workspace_id == workspace_id).order_by(ApiKey.id)))


def revoke_api_key(session: Session, workspace_id: int, key_id: int) -> None:
    key = session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.workspace_id == workspace_id))
    if key is None:
        raise NotFound("no API key {id}", "id", id=key_id)
    key.revoked_at = utcnow()
    audit(session, workspace_id, "system", "api_key.revoked", "api_key", key.id, {})


def audit(
    session: Session, workspace_id: int, actor: str, action: str, entity_type: str, entity_id: Any,
    changes: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEntry(
            workspace_id=workspace_id, actor=actor, action=action, entity_type=entity_type,
            entity_id=str(entity_id), changes=changes or {},
        )
    )


def audit_trail(session: Session, workspace_id: int, entity_type: str, entity_id: Any, limit: int = 50) -> list[AuditEntry]:
    stmt = (
        select(AuditEntry)
        .where(AuditEntry.workspace_id == workspace_id, AuditEntry.entity_type == entity_type,
               AuditEntry.entity_id == str(entity_id))
        .order_by(AuditEntry.id.desc()).limit(limit)
    )
    return list(session.scalars(stmt))
