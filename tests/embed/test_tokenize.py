"""The tokenize stage without Ray: slicing a block for the tokenizer must not change its output."""

import pyarrow as pa

from embednv.columns import ERROR, NOTE_TOKENS, TEXT, WINDOWS
from embednv.embed import tokenize as tokenization
from embednv.embed.tokenize import tokenize_table


def test_tokenizing_in_slices_equals_one_call(minilm, monkeypatch):
    ref, _ = minilm
    texts = [f"Note {i}: chest pain for {i} days. " * (1 + i % 40) for i in range(23)]
    errors = [None if i % 5 else "text is null" for i in range(23)]  # error rows on and off slice edges
    table = pa.table({TEXT: pa.array(texts, pa.large_string()), ERROR: pa.array(errors, pa.string())})

    whole = tokenize_table(table, ref, "")
    monkeypatch.setattr(tokenization, "TOKENIZE_NOTES", 4)
    sliced = tokenize_table(table, ref, "")

    assert sliced.equals(whole)
    assert sliced.column(NOTE_TOKENS).to_pylist()[0] == 0 and sliced.column(WINDOWS).to_pylist()[0] == []
    assert tokenize_table(table.slice(0, 0), ref, "").schema == whole.schema
