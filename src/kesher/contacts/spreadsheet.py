"""Read CSV and XLSX files as a stream of rows, whatever encoding or delimiter Excel chose."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zipfile import BadZipFile

from charset_normalizer import from_bytes

from kesher.errors import ValidationError

SAMPLE = 1 << 20
MAX_FIELD = 1 << 20
# Hebrew Excel on Windows saves "CSV" in Windows-1255; these are the encodings worth guessing among.
CANDIDATES = ["cp1255", "iso8859_8", "cp1252", "latin_1"]
csv.field_size_limit(MAX_FIELD)


@dataclass(frozen=True)
class FileFormat:
    kind: str  # csv or xlsx
    encoding: str | None = None
    delimiter: str = ","


def detect(path: str | Path) -> FileFormat:
    path = Path(path)
    with path.open("rb") as fh:
        head = fh.read(SAMPLE)
    if not head.strip():
        raise ValidationError("the file is empty", "file")
    if head.startswith(b"PK\x03\x04"):
        return FileFormat("xlsx")
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise ValidationError("this is an old Excel (.xls) file; save it as .xlsx or CSV and try again", "file")
    encoding = _encoding(head)
    text = head.decode(encoding, errors="ignore")
    if _looks_binary(text):
        raise ValidationError("this does not look like a CSV or Excel file (it holds binary data)", "file")
    return FileFormat("csv", encoding, _delimiter(text))


def _looks_binary(text: str) -> bool:
    """Many control characters mean binary data; a stray NUL in one row is that row's problem."""
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\r\n\t")
    return controls > max(2, len(text) // 100)


def _encoding(head: bytes) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        # The sample may end inside a multi-byte character; an incremental decoder allows that.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < SAMPLE)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    best = from_bytes(head, cp_isolation=CANDIDATES).best()
    return best.encoding if best is not None else "cp1255"


def _delimiter(text: str) -> str:
    sample = "\n".join(text.splitlines()[:50])
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def check_text(path: str | Path, fmt: FileFormat) -> int:
    """Decode the whole file once (so a wrong encoding fails before anything is stored); returns line count."""
    if fmt.kind != "csv":
        return 0
    decoder = codecs.getincrementaldecoder(fmt.encoding or "utf-8")()
    lines, offset = 0, 0
    with Path(path).open("rb") as fh:
        while chunk := fh.read(SAMPLE):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                raise ValidationError(
                    "the file is not valid {encoding} text (byte {byte:,}); save it as 'CSV UTF-8' and try again",
                    "file", encoding=fmt.encoding, byte=offset + exc.start) from None
            lines += chunk.count(b"\n")
            offset += len(chunk)
        decoder.decode(b"", final=True)
    return lines


@contextmanager
def open_rows(path: str | Path, fmt: FileFormat | None = None) -> Iterator[tuple[list[str], Iterator[tuple[int, list[Any]]]]]:
    """The header and an iterator of (spreadsheet row number, cells); the header is row 1."""
    fmt = fmt or detect(path)
    if fmt.kind == "xlsx":
        with _xlsx_rows(path) as rows:
            yield _split_header(rows)
        return
    with Path(path).open(encoding=fmt.encoding, newline="", errors="strict") as fh:
        yield _split_header(_csv_rows(fh, fmt.delimiter))


def _split_header(rows: Iterator[tuple[int, list[Any]]]) -> tuple[list[str], Iterator[tuple[int, list[Any]]]]:
    for _, cells in rows:
        header = ["" if c is None else str(c).replace("\ufeff", "").strip() for c in cells]
        while header and not header[-1]:
            header.pop()
        if header:
            return header, rows
    raise ValidationError("the file has no header row", "file")


def _csv_rows(fh: io.TextIOBase, delimiter: str) -> Iterator[tuple[int, list[Any]]]:
    reader = csv.reader(fh, delimiter=delimiter)
    number = 0
    while True:
        number += 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield number, [RowProblem(str(exc))]
            continue
        yield number, cells


@dataclass(frozen=True)
class RowProblem:
    """A row the reader could not split into cells (a NUL byte, an oversized field)."""

    message: str


@contextmanager
def _xlsx_rows(path: str | Path) -> Iterator[Iterator[tuple[int, list[Any]]]]:
    from openpyxl import load_workbook  # imported here: worker processes that check rows never need it
    from openpyxl.utils.exceptions import InvalidFileException

    fh = Path(path).open("rb")  # a file object: the format was told by content, not by the name's extension
    try:
        # read_only streams the sheet; data_only=False keeps a formula as its text, never its result.
        book = load_workbook(fh, read_only=True, data_only=False)
    except (BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as exc:
        fh.close()
        raise ValidationError("this Excel file cannot be read ({reason})", "file", reason=str(exc)) from None
    try:
        sheet = book.worksheets[0]
        yield ((n, list(row)) for n, row in enumerate(sheet.iter_rows(values_only=True), start=1))
    finally:
        book.close()
        fh.close()
