"""From spreadsheet rows to contact inputs, in this process or in worker processes.

Nothing here touches the database, so worker processes that check rows stay small.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from multiprocessing import get_context
from typing import Any

from kesher.contacts.columns import Column
from kesher.contacts.inputs import ContactInput, FieldSpec, validate_contact
from kesher.contacts.spreadsheet import RowProblem
from kesher.errors import ValidationError
from kesher.memory import settle

_YES = {"1", "true", "yes", "y", "כן", "v", "✓", "granted"}
_NO = {"0", "false", "no", "n", "לא", "denied"}


@dataclass(frozen=True)
class RowPlan:
    """Everything needed to turn a row into a contact input: plain data, so worker processes can use it."""

    columns: tuple[Column, ...]
    width: int
    fields: dict[str, FieldSpec]
    region: str

    @classmethod
    def build(cls, columns: list[Column], custom: dict[str, Any], region: str) -> RowPlan:
        used = tuple(c for c in columns if c.target != "skip")
        return cls(used, len(columns), {k: FieldSpec.of(f) for k, f in custom.items()}, region)

    @property
    def header_of(self) -> dict[str, str]:
        return {("fields." + c.field_key if c.target == "field" else c.target): c.header for c in self.columns}


def prepare(plan: RowPlan, chunk: list[tuple[int, list[Any]]]) -> list[ContactInput]:
    """Validate a chunk of rows; blank rows are dropped."""
    return [item for number, cells in chunk if (item := _item(plan, number, cells)) is not None]


def _item(plan: RowPlan, number: int, cells: list[Any]) -> ContactInput | None:
    if cells and isinstance(cells[0], RowProblem):
        return ContactInput(number, {}, errors=[ValidationError("the row cannot be read: {reason}", "",
                                                                 reason=cells[0].message)])
    if all(c is None or (isinstance(c, str) and not c.strip()) for c in cells):
        return None
    data: dict[str, Any] = {"fields": {}, "consent": {}}
    errors: list[ValidationError] = []
    if any(c not in (None, "") for c in cells[plan.width:]):
        errors.append(ValidationError("the row has {cells} cells but the header has {width}", "", cells=len(cells),
                                      width=plan.width))
    for column in plan.columns:
        value = cells[column.index] if column.index < len(cells) else None
        if column.target == "field":
            data["fields"][column.field_key] = value
        elif column.target.startswith("consent."):
            status = _consent(value, column.target)
            if isinstance(status, ValidationError):
                errors.append(status)
            elif status:
                data["consent"][column.target.split(".", 1)[1]] = status
        else:
            data[column.target] = value
    item = validate_contact(number, data, plan.fields, plan.region)
    item.errors = errors + item.errors
    return item


_worker_plan: RowPlan | None = None


def _init_worker(plan: RowPlan) -> None:
    global _worker_plan
    _worker_plan = plan
    settle()


def _prepare_in_worker(chunk: list[tuple[int, list[Any]]]) -> list[ContactInput]:
    return prepare(_worker_plan, chunk)  # type: ignore[arg-type]


def _context() -> Any:
    """Fresh worker processes that load only this module: not forked from a process holding database
    connections and threads, and not re-running the command that started them (as spawn would)."""
    context = get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


@contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Start worker processes without the main script.

    A new process first runs the script that started its parent (multiprocessing prepares it so),
    and for the `kesher` command that imports the whole application: some 55 MB a worker that
    checking rows never uses. Without `__file__` on the main module nothing is run; it is put back
    at once, as only starting a process reads it.
    """
    main = sys.modules["__main__"]
    script = main.__dict__.pop("__file__", None) if getattr(main, "__spec__", None) is None else None
    try:
        yield
    finally:
        if script is not None:
            main.__file__ = script


def prepared(
    plan: RowPlan, rows: Iterator[tuple[int, list[Any]]], batch_size: int, processes: int,
) -> Iterator[tuple[int, list[ContactInput]]]:
    """(rows read, inputs) per batch, in file order. With processes, rows are checked in worker
    processes while this one writes; at most two batches per process are in flight, so memory
    stays flat whatever the file size."""
    chunks = iter(lambda: list(islice(rows, batch_size)), [])
    if processes <= 0:
        for chunk in chunks:
            yield len(chunk), prepare(plan, chunk)
        return
    with ProcessPoolExecutor(processes, mp_context=_context(), initializer=_init_worker, initargs=(plan,)) as pool:
        pending: deque[tuple[int, Future[list[ContactInput]]]] = deque()
        for chunk in chunks:
            with _main_script_hidden():  # a submit may start a worker process
                pending.append((len(chunk), pool.submit(_prepare_in_worker, chunk)))
            if len(pending) >= 2 * processes:
                count, future = pending.popleft()
                yield count, future.result()
        while pending:
            count, future = pending.popleft()
            yield count, future.result()


def _consent(value: Any, column: str) -> str | ValidationError | None:
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip().lower()
    if text in _YES:
        return "granted"
    if text in _NO:
        return "denied"
    return ValidationError("{value!r} is not yes/no (כן/לא)", column, value=str(value)[:40])
