"""The real Mistral-7B-v0.1 vocabulary, as NV-Embed-v2 ships it, and the ids sentencepiece gives.

`mistral-common` (test extra) ships `mistral_common/data/tokenizer.model.v1`: the Mistral-7B-v0.1
sentencepiece model that NV-Embed-v2's tokenizer was converted from. `write_mistral_tokenizer`
turns it into tokenizer files in the official checkpoint's layout (the one `LlamaTokenizerFast`
loads as shipped in transformers 4.42, the official environment); `sentencepiece_ids` is the
reference those files must reproduce.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

SPECIALS = {"<unk>": 0, "<s>": 1, "</s>": 2}  # ids in Mistral-7B-v0.1, as the official added_tokens


def sentencepiece_model_path() -> Path:
    """The sentencepiece model inside the installed mistral-common wheel, found without importing it."""
    spec = importlib.util.find_spec("mistral_common")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("mistral-common is not installed (it is in the `test` extra)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "tokenizer.model.v1"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: this mistral-common wheel no longer ships the v1 model")
    return path


def write_mistral_tokenizer(out: Path, model_file: Path | None = None) -> Path:
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json as NV-Embed-v2 ships them.

    Vocab and merges come from the sentencepiece pieces; the pipeline is the official one:
    normalizer Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer, BPE with byte fallback,
    a `<s> $A` template, and `<unk>`, `<s>`, `</s>` as special added tokens that are matched
    in the raw text (normalized: false).
    """
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file or sentencepiece_model_path()))
    vocab = {sp.id_to_piece(i): i for i in range(sp.piece_size())}
    assert all(sp.is_byte(vocab[f"<0x{b:02X}>"]) for b in range(256)), "not a byte-fallback model"
    for token, token_id in SPECIALS.items():
        assert vocab.get(token) == token_id, f"{token} has id {vocab.get(token)}, expected {token_id}"
    specials = [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
         "special": True}
        for t, i in SPECIALS.items()
    ]  # fmt: skip
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": specials,
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                {"type": "Prepend", "prepend": "▁"},
                {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
            ],
        },
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [
                {"SpecialToken": {"id": "<s>", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "<s>", "type_id": 1}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
        },
        "decoder": {
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0},
            ],
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": "<unk>",
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": True,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": bpe_merges(sp),
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
    special_map = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {str(s["id"]): {k: v for k, v in s.items() if k != "id"} for s in specials},
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "legacy": True,
        "model_max_length": 1000000000000000019884624838656,
        "pad_token": None,
        "sp_model_kwargs": {},
        "spaces_between_special_tokens": False,
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (out / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2))
    return out


def bpe_merges(sp) -> list[list[str]]:
    """Every split of a normal piece into two pieces, in the order sentencepiece would merge them.

    sentencepiece merges the adjacent pair whose result scores highest, and among equal scores
    the leftmost pair. Whitespace runs ("▁▁", "▁▁▁", ...) all score -1e9, below every word: a
    merged-id order would join "▁▁" before "▁b" and give " b" -> "▁▁", "b" instead of "▁", "▁b".
    Equal scores rank longer left, then longer right parts first, so that a run grows from its
    left end as in sentencepiece (transformers' `generate_merges` order). Control, unknown and
    byte pieces are never the result of a merge in sentencepiece, so they get no merge here.
    """
    vocab = {sp.id_to_piece(i): i for i in range(sp.piece_size())}
    merges = []
    for i in range(sp.piece_size()):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i) or sp.is_unused(i):
            continue
        text = sp.id_to_piece(i)
        splits = [(text[:cut], text[cut:]) for cut in range(1, len(text))]
        splits = sorted((vocab[a], vocab[b], a, b) for a, b in splits if a in vocab and b in vocab)
        merges.extend((sp.get_score(i), left, right) for *_, left, right in splits)
    # sorted() is stable: ties keep piece order, then the parts' ids.
    merges = sorted(merges, key=lambda m: (m[0], len(m[1]), len(m[2])), reverse=True)
    return [[left, right] for _, left, right in merges]


SPECIAL_SPLIT = re.compile("(" + "|".join(re.escape(t) for t in SPECIALS) + ")")


def sentencepiece_ids(sp, text: str, add_bos: bool = True) -> list[int]:
    """The official fast tokenizer's ids for `text`, computed by sentencepiece itself.

    The fast tokenizer first cuts the raw text at the special tokens' text (`<s>`, `</s>`,
    `<unk>`), which become their ids; the normalizer then runs on each piece between them on its
    own, so every non-empty piece gets its own leading "▁", just as sentencepiece's dummy prefix
    does when it encodes that piece alone.
    """
    ids = [SPECIALS["<s>"]] if add_bos else []
    for part in SPECIAL_SPLIT.split(text):
        if part in SPECIALS:
            ids.append(SPECIALS[part])
        elif part:
            ids.extend(sp.encode(part))
    return ids
