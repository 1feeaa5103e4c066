"""Errors a user can act on. Each names the field at fault, so the API and CLI can point at it.

A message is an English text with `{placeholders}`, filled from keyword arguments:
`ValidationError("not a valid phone number: {value}", "phone", value=raw)`. The text itself is the
message id of the Babel catalogues, so the UI shows the error in the user's language (`text()`),
while `message` and `str()` give it in English, for logs, the API and the CLI.
"""

from __future__ import annotations

from typing import Any


class KesherError(Exception):
    """Base of every error that is the caller's to fix."""

    status = 400

    def __init__(self, message: str, field: str | None = None, /, **params: Any) -> None:
        super().__init__(message, field)
        self.template = message
        self.field = field
        self.params = params
        self.message = message.format(**params) if params else message

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled with its parameters, so the error survives the trip to a worker process and back."""
        return _rebuild, (type(self), self.template, self.field, self.params)

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message

    def text(self, language: str | None = None) -> str:
        """The message in `language`, or in the current request's language."""
        from kesher.web.i18n import translate

        return translate(self.template, self.params, language)

    def located(self, field: str | None) -> KesherError:
        """The same error, of the same kind, naming another field (e.g. where an inner value sits in a form)."""
        return _rebuild(type(self), self.template, field, self.params)


def _rebuild(kind: type[KesherError], template: str, field: str | None, params: dict[str, Any]) -> KesherError:
    error = kind.__new__(kind)
    KesherError.__init__(error, template, field, **params)
    return error


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
