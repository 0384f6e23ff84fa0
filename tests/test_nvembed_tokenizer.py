"""NV-Embed-v2 token ids with the real Mistral-7B-v0.1 vocabulary, checked against sentencepiece.

Ids go through embednv's own path (`load_nvembed_tokenizer` + `NoteTokenizer` with the
instruction as prefix and EOS as suffix) and must equal what sentencepiece gives for the same
input, cut at special-token text as the official fast tokenizer cuts it (`sentencepiece_ids`).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("sentencepiece")
pytest.importorskip("mistral_common")

sys.path.insert(0, str(Path(__file__).parent))
from mistral_tokenizer import sentencepiece_ids, sentencepiece_model_path, write_mistral_tokenizer  # noqa: E402
from nvembed_fixtures import write_tiny_nvembed_checkpoint  # noqa: E402

from embednv.embed.tokenize import NoteTokenizer  # noqa: E402
from embednv.models.nvembed import (  # noqa: E402
    DEFAULT_MAX_TOKENS,
    NVEmbedEncoder,
    build_instruction,
    load_nvembed_tokenizer,
)

BOS, EOS = 1, 2
INSTRUCTIONS = {"no-instruction": "", "instruction": build_instruction("similar-notes")}
CASES = {
    "leading-spaces": "  leading spaces",
    "one-leading-space": " Patient seen today.",
    "trailing-spaces": "Vitals stable.   ",
    "repeated-spaces": "BP  120/80,   HR 72    bpm,          RR 16",
    "lone-space": " ",
    "empty": "",
    "tabs-newlines": "HPI:\tchest pain\n\nPlan:\n\t- aspirin 81 mg\r\n  - follow up\n",
    "space-mark": "▁a▁b ▁ ▁▁c▁",
    "lone-space-mark": "▁",
    "literal-bos": "see <s> here<s>x",
    "literal-eos": "ends</s> early </s>",
    "literal-unk": "<unk> token <unk>",
    "adjacent-specials": "<s></s><s> </s>  x",
    "accents": "Café, naïve façade, Ångström, señor, Müller, résumé",
    "cjk": "患者は胸痛を訴えた。病人主诉胸痛。흉통이 있다",
    "arabic": "يشكو المريض من ألم في الصدر منذ ٣ أيام",
    "emoji": "Patient 😀 feels 👍🏽 better ❤️ today",
    "units": "5 mg/kg q8h, 98.6°F, 37 °C, SpO2 95%, 1,000 mL, 2.5×10⁹/L, 10 µg, ½ tab",
}


@pytest.fixture(scope="module")
def sp():
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_file=str(sentencepiece_model_path()))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny random model over the full 32,000-id vocabulary, with the real tokenizer files."""
    path = write_tiny_nvembed_checkpoint(tmp_path_factory.mktemp("mistral"), shards=1, tokenizer=False,
                                         vocab_size=32000)  # fmt: skip
    return write_mistral_tokenizer(path)


@pytest.fixture(scope="module")
def tokenizer(checkpoint):
    return load_nvembed_tokenizer(checkpoint)


def note_tokenizer(tokenizer, instruction: str, max_tokens: int = DEFAULT_MAX_TOKENS, **kwargs) -> NoteTokenizer:
    """As `embednv.embed.tokenize.cached_note_tokenizer` builds it for NV-Embed."""
    return NoteTokenizer(tokenizer, max_tokens, prefix=instruction, suffix=tokenizer.eos_token, **kwargs)


def test_loader_keeps_the_shipped_pipeline(checkpoint, tokenizer):
    shipped = json.loads((checkpoint / "tokenizer.json").read_text(encoding="utf-8"))
    loaded = json.loads(tokenizer.backend_tokenizer.to_str())
    for key in ("normalizer", "pre_tokenizer", "model", "post_processor", "decoder", "added_tokens"):
        assert loaded[key] == shipped[key], key
    assert tokenizer.backend_tokenizer.pre_tokenizer is None
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.unk_token) == ("<s>", "</s>", "<unk>")
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (BOS, EOS, EOS)
    batch = tokenizer(["a", "a b c"], padding=True)
    assert batch["input_ids"][0][-1] == EOS and batch["attention_mask"][0][-1] == 0, "not right-padded with EOS"


@pytest.mark.parametrize("instruction", INSTRUCTIONS.values(), ids=INSTRUCTIONS.keys())
@pytest.mark.parametrize("text", CASES.values(), ids=CASES.keys())
def test_ids_equal_sentencepiece(sp, tokenizer, text, instruction):
    expected = sentencepiece_ids(sp, instruction + text + "</s>")
    (note,) = note_tokenizer(tokenizer, instruction)([text])
    assert note.windows == [expected]
    assert note.n_tokens == len(expected)
    assert expected[0] == BOS and expected[-1] == EOS


@pytest.mark.parametrize("instruction", INSTRUCTIONS.values(), ids=INSTRUCTIONS.keys())
def test_long_note_windows_are_head_body_slice_tail(sp, tokenizer, instruction):
    text = " ".join(CASES.values()) * 6
    expected = sentencepiece_ids(sp, instruction + text + "</s>")
    max_tokens, overlap = 96, 8
    notes = note_tokenizer(tokenizer, instruction, max_tokens, overlap=overlap)
    n_head = 1 + (len(sp.encode(instruction)) if instruction else 0)
    assert (notes.n_head, notes.n_tail) == (n_head, 1)
    (note,) = notes([text])
    assert note.n_tokens == len(expected) > 4 * max_tokens
    head, body, tail = expected[:n_head], expected[n_head:-1], expected[-1:]
    room, stride = max_tokens - n_head - 1, max_tokens - n_head - 1 - overlap
    assert len(note.windows) == 1 + -(-(len(body) - room) // stride)
    for i, window in enumerate(note.windows):
        assert window == head + body[i * stride : i * stride + room] + tail, f"window {i}"
    assert (len(note.windows) - 1) * stride + room >= len(body), "the last window does not reach the end"


@pytest.mark.parametrize("task", ["similar-notes", "specialty", "diagnosis", "cohort"])
def test_pool_skip_counts_the_instruction_as_sentencepiece(sp, checkpoint, task):
    instruction = build_instruction(task)
    encoder = NVEmbedEncoder(checkpoint, device="cpu", dtype="float32", instruction=instruction)
    assert encoder.n_pool_skip == len(sp.encode(instruction))


@pytest.mark.parametrize("instruction", INSTRUCTIONS.values(), ids=INSTRUCTIONS.keys())
def test_mtsamples_ids_equal_sentencepiece(sp, tokenizer, mtsamples_path, instruction):
    import pyarrow.parquet as pq

    texts = [t for t in pq.read_table(mtsamples_path, columns=["transcription"]).column(0).to_pylist() if t][:400]
    notes = note_tokenizer(tokenizer, instruction)(texts)
    wrong = [i for i, (text, note) in enumerate(zip(texts, notes))
             if note.windows != [sentencepiece_ids(sp, instruction + text + "</s>")]]  # fmt: skip
    assert not wrong, f"{len(wrong)} of {len(texts)} notes get other ids than sentencepiece, rows {wrong[:10]}"


def test_template_disagreeing_with_tokenizer_config_fails(checkpoint, tmp_path):
    for name in ("tokenizer.json", "special_tokens_map.json"):
        (tmp_path / name).write_bytes((checkpoint / name).read_bytes())
    config = json.loads((checkpoint / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**config, "add_eos_token": True}))
    with pytest.raises(ValueError, match="add_eos_token=True"):
        load_nvembed_tokenizer(tmp_path)


def test_special_token_missing_from_vocabulary_fails(checkpoint, tmp_path):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((checkpoint / name).read_bytes())
    (tmp_path / "special_tokens_map.json").write_text(json.dumps({"eos_token": "<|end|>"}))
    with pytest.raises(ValueError, match=re.escape("<|end|>")):
        load_nvembed_tokenizer(tmp_path)
