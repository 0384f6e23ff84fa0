"""Raw id and text values to typed columns, with a reason for every value that cannot be used.

Exports from EHRs, Spark and Excel carry ids such as MRNs and accession numbers (`007`,
`0012345`) whose leading zeros are part of the id, so CSV and JSONL ids are read as strings,
exactly as written, unless the user asks for integers (`--id-type int`). Parquet ids keep their
column's type. Text must be valid UTF-8: one bad note becomes an error row, never a failed job.
"""

from __future__ import annotations

import re
from typing import Literal

import pyarrow as pa

IdType = Literal["string", "int"]
ID_TYPES = ("string", "int")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_INT64 = (-(2**63), 2**63 - 1)

# Problems a value can have; each becomes the row's reason in _errors/errors.parquet.
NOT_AN_INTEGER = "id is not an integer (--id-type int)"


def id_from_json(value: object, id_type: IdType) -> tuple[object, str | None]:
    """A JSONL record's id as the run's id type, or (None, why not)."""
    if value is None:
        return None, None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None, f"id is a JSON {_json_kind(value)}, not a string or an integer"
    return id_from_text(value if isinstance(value, str) else str(value), id_type)


def id_from_text(value: str | None, id_type: IdType) -> tuple[object, str | None]:
    """A CSV cell (or a JSON string) as the run's id type: the text itself, or an integer when asked."""
    if value is None or id_type == "string":
        return value, None
    if not _INTEGER.fullmatch(value.strip()):
        return None, NOT_AN_INTEGER
    number = int(value)
    if not _INT64[0] <= number <= _INT64[1]:
        return None, NOT_AN_INTEGER
    return number, None


def arrow_id_type(id_type: IdType) -> pa.DataType:
    return pa.int64() if id_type == "int" else pa.string()


def plain_ids(ids: pa.Array) -> pa.Array:
    """Parquet ids as their column's logical type: dictionary-encoded (pandas categoricals) decoded,
    every string layout as `string`, so files written by different tools agree."""
    if pa.types.is_dictionary(ids.type):
        ids = ids.dictionary_decode()
    if pa.types.is_large_string(ids.type) or pa.types.is_string_view(ids.type):
        ids = ids.cast(pa.string())
    return ids


def unusable_id_type(data_type: pa.DataType) -> bool:
    """Nested ids (struct, list, map) cannot be compared, written to CSV or looked up by `cohort --near`."""
    if pa.types.is_dictionary(data_type):
        data_type = data_type.value_type
    return pa.types.is_nested(data_type)


def is_text_type(data_type: pa.DataType) -> bool:
    """Strings, and binary columns (older Hive/Impala Parquet writes strings unannotated), plain or dictionary."""
    if pa.types.is_dictionary(data_type):
        data_type = data_type.value_type
    return (
        pa.types.is_string(data_type)
        or pa.types.is_large_string(data_type)
        or pa.types.is_string_view(data_type)
        or pa.types.is_binary(data_type)
        or pa.types.is_large_binary(data_type)
        or pa.types.is_binary_view(data_type)
        or pa.types.is_null(data_type)
    )


def decode_texts(texts: pa.Array) -> tuple[pa.Array, list[str | None] | None]:
    """A Parquet text column as large_string plus per-row problems (None when every row is valid UTF-8).

    Parquet readers do not check UTF-8, so a string column can hold invalid bytes that would fail
    the first compute function to touch them. The common case is one full validation; only a
    column that fails it is decoded row by row to find the bad rows.
    """
    if pa.types.is_dictionary(texts.type):
        texts = texts.dictionary_decode()
    if pa.types.is_null(texts.type):
        return pa.nulls(len(texts), pa.large_string()), None
    raw = texts.cast(pa.large_binary())  # a reinterpretation for strings: nothing is checked yet
    try:
        return raw.cast(pa.large_string()), None  # validates UTF-8
    except pa.ArrowInvalid:
        pass
    values, problems = [], []
    for cell in raw.to_pylist():
        text, problem = decode_utf8(cell)
        values.append(text)
        problems.append(problem)
    return pa.array(values, pa.large_string()), problems


def text_problem(text: object) -> str | None:
    """Why a note's text cannot be embedded, or None: the reasons `_errors/errors.parquet` and `Embedder` give."""
    if text is None:
        return "text is null"
    if not isinstance(text, str):
        return f"text is not a string ({type(text).__name__})"
    if not text.strip():
        return "text is empty or whitespace only"
    return None


def decode_utf8(raw: bytes | None, what: str = "text") -> tuple[str | None, str | None]:
    """Bytes to text, or (None, "invalid UTF-8 in {what} at byte N"): the position, never the bytes."""
    if raw is None:
        return None, None
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as error:
        return None, f"invalid UTF-8 in {what} at byte {error.start}"


def _json_kind(value: object) -> str:
    return {bool: "boolean", float: "number", dict: "object", list: "array"}.get(type(value), type(value).__name__)
