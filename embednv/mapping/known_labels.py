"""Each map row's known label (`--labels-column`), held as a small integer code.

A label per note as a Python object costs a pointer a note and, wherever it is turned into a
string, an object a note: at a million notes that is what grew the driver's memory with n.
Codes are 4 bytes a note and the distinct labels are held once, whatever their length.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

UNKNOWN = -1  # the code of a row with no label (null in the file, or the file lacks its id)


class KnownLabels:
    """`codes[i]` is map row i's label as an index into `names` (UNKNOWN: none); a label's name is `str(value)`."""

    def __init__(self, n: int) -> None:
        self.codes = np.full(n, UNKNOWN, dtype=np.int32)
        self.names: list[str] = []
        self._code_of: dict[str, int] = {}

    @classmethod
    def from_values(cls, values: Iterable) -> KnownLabels:
        """From one value per row (None: no label): for labels already in memory."""
        values = list(values)
        known = cls(len(values))
        known.put(np.arange(len(values)), pa.array([None if v is None else str(v) for v in values], pa.string()))
        return known

    def put(self, rows: np.ndarray, column: pa.Array) -> None:
        """Set the labels of map `rows` from a batch's column (nulls: no label)."""
        encoded = pc.dictionary_encode(column)
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        lookup = np.array([self._code(v) for v in encoded.dictionary.to_pylist()] + [UNKNOWN], dtype=np.int32)
        indices = encoded.indices.fill_null(len(lookup) - 1).to_numpy(zero_copy_only=False)
        self.codes[rows] = lookup[indices]

    def _code(self, value) -> int:
        name = str(value)
        code = self._code_of.get(name)
        if code is None:
            code = self._code_of[name] = len(self.names)
            self.names.append(name)
        return code

    def __len__(self) -> int:
        return len(self.codes)

    def values(self) -> list[str | None]:
        """Each row's label name (None: no label): a list of n, for tests and small maps only."""
        return [None if c == UNKNOWN else self.names[c] for c in self.codes.tolist()]
