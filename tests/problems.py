"""Checking the API's problem+json answers, shared by the API tests of every package."""

PROBLEM = "application/problem+json"


def problem(response, status: int, field: str | None = None) -> dict:
    """The problem body of `response`, once its status, content type and (if given) field are as expected."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    if field is not None:
        assert body["field"] == field, body
        assert field in [e["field"] for e in body["errors"]]
    return body
