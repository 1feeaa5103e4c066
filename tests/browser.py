"""A TestClient that behaves like a browser on Kesher's pages: it sends back the CSRF token it was given."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """A TestClient that remembers the CSRF token of the last page it read and posts it with each form."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.csrf = ""

    def get(self, url: str, **kwargs):  # type: ignore[no-untyped-def]
        response = self.client.get(url, **kwargs)
        if match := TOKEN.search(response.text):
            self.csrf = match.group(1)
        return response

    def post(self, url: str, data: dict | None = None, **kwargs):  # type: ignore[no-untyped-def]
        return self.client.post(url, data={"csrf_token": self.csrf, **(data or {})}, **kwargs)
