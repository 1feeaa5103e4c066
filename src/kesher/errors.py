"""Errors a user can act on. Each names the field at fault, so the API and CLI can point at it."""

from __future__ import annotations


class KesherError(Exception):
    """Base of every error that is the caller's to fix."""

    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message, field)  # both in args, so the error survives pickling to a worker process
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class ValidationError(KesherError):
    status = 422


class NotFound(KesherError):
    status = 404


class Conflict(KesherError):
    status = 409


class AuthError(KesherError):
    status = 401


class BodyTooLarge(KesherError):
    status = 413
