"""A tiny random NV-Embed checkpoint in the official on-disk layout, for tests and smoke runs.

config.json (model_type nvembed, text_config, latent_attention_config, auto_map as shipped),
sharded safetensors + model.safetensors.index.json (or one model.safetensors), and a tokenizer.json
in the official layout (BOS added by a template, EOS appended by the caller), written as the
official file is: by tokenizers before 0.20 (`as_written_before_tokenizers_020`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

TEXT_DEFAULTS = {  # small, but with grouped-query attention (4 query heads, 2 KV heads) like Mistral
    "vocab_size": 256,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "max_position_embeddings": 512,
}
LATENT_DEFAULTS = {  # head width 24 != 64 / 2 so that a mix-up of inner and model width shows
    "num_latents_value": 16,
    "num_cross_heads": 2,
    "cross_dim_head": 24,
    "latent_dim": 64,
    "hidden_dim": 64,
}
# tokenizer_form: "pre-0.20" as NV-Embed-v2's tokenizer.json is written (merges as "a b" strings),
# "current" as today's tokenizers writes it (merges as pairs). Both must load.
TOKENIZER_FORMS = ("pre-0.20", "current")
OPTIONS = {"dtype": torch.float32, "tokenizer": True, "tokenizer_form": "pre-0.20"}
CORPUS = [
    "Patient presents with chest pain and shortness of breath radiating to the left arm.",
    "History of type 2 diabetes mellitus on metformin, hypertension and chronic kidney disease.",
    "No acute distress. Vitals stable. Lungs clear to auscultation. Discharged home with follow up.",
    "Instruct: Given a clinical note, retrieve clinical notes that describe a similar patient presentation\nQuery: ",
]


def tiny_state_dict(text: dict, latent: dict, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict:
    """Random weights under the official names; linear weights ~ 1/sqrt(fan_in) to keep signals O(1)."""
    gen = torch.Generator().manual_seed(seed)
    d, ff = text["hidden_size"], text["intermediate_size"]
    n_heads, n_kv = text["num_attention_heads"], text["num_key_value_heads"]
    hd = d // n_heads
    inner = latent["num_cross_heads"] * latent["cross_dim_head"]

    def linear(n_out, n_in):
        return torch.randn(n_out, n_in, generator=gen) / n_in**0.5

    def norm(n, center=1.0):
        return center + 0.1 * torch.randn(n, generator=gen)

    sd = {"embedding_model.embed_tokens.weight": torch.randn(text["vocab_size"], d, generator=gen)}
    for i in range(text["num_hidden_layers"]):
        p = f"embedding_model.layers.{i}."
        sd[p + "self_attn.q_proj.weight"] = linear(n_heads * hd, d)
        sd[p + "self_attn.k_proj.weight"] = linear(n_kv * hd, d)
        sd[p + "self_attn.v_proj.weight"] = linear(n_kv * hd, d)
        sd[p + "self_attn.o_proj.weight"] = linear(d, n_heads * hd)
        sd[p + "mlp.gate_proj.weight"] = linear(ff, d)
        sd[p + "mlp.up_proj.weight"] = linear(ff, d)
        sd[p + "mlp.down_proj.weight"] = linear(d, ff)
        sd[p + "input_layernorm.weight"] = norm(d)
        sd[p + "post_attention_layernorm.weight"] = norm(d)
    sd["embedding_model.norm.weight"] = norm(d)
    p = "latent_attention_model."
    sd[p + "latents"] = torch.randn(latent["num_latents_value"], latent["hidden_dim"], generator=gen)
    sd[p + "cross_attend_blocks.0.norm.weight"] = norm(d)
    sd[p + "cross_attend_blocks.0.norm.bias"] = norm(d, 0.0)
    sd[p + "cross_attend_blocks.0.norm_context.weight"] = norm(d)
    sd[p + "cross_attend_blocks.0.norm_context.bias"] = norm(d, 0.0)
    sd[p + "cross_attend_blocks.0.fn.to_q.weight"] = linear(inner, d)
    sd[p + "cross_attend_blocks.0.fn.to_kv.weight"] = linear(2 * inner, d)
    sd[p + "cross_attend_blocks.0.fn.to_out.weight"] = linear(d, inner)
    sd[p + "cross_attend_blocks.1.norm.weight"] = norm(d)
    sd[p + "cross_attend_blocks.1.norm.bias"] = norm(d, 0.0)
    sd[p + "cross_attend_blocks.1.fn.net.0.weight"] = linear(8 * d, d)
    sd[p + "cross_attend_blocks.1.fn.net.0.bias"] = norm(8 * d, 0.0)
    sd[p + "cross_attend_blocks.1.fn.net.2.weight"] = linear(d, 4 * d)
    sd[p + "cross_attend_blocks.1.fn.net.2.bias"] = norm(d, 0.0)
    return {k: v.to(dtype).contiguous() for k, v in sd.items()}


def write_safetensors(state_dict: dict, out: Path, shards: int) -> None:
    """One model.safetensors when shards == 1, else model-0000i-of-0000n shards plus the index."""
    from safetensors.torch import save_file

    if shards == 1:
        save_file(state_dict, str(out / "model.safetensors"), metadata={"format": "pt"})
        return
    keys = list(state_dict)
    weight_map, total = {}, 0
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: state_dict[k] for k in keys[i::shards]}
        save_file(part, str(out / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in part})
        total += sum(t.numel() * t.element_size() for t in part.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def write_tiny_tokenizer(
    out: Path, vocab_size: int = 256, corpus: list[str] | None = None, form: str = "pre-0.20"
) -> None:
    """A BPE tokenizer in NV-Embed-v2's tokenizer.json layout: normalizer Prepend("▁") +
    Replace(" ", "▁"), no pre-tokenizer, byte-fallback BPE, `<s>` added by a template.

    Trained on `corpus` when given (benchmarks train on real notes for realistic token counts),
    else on the few fixture sentences. `form` is one of `TOKENIZER_FORMS`.
    """
    if form not in TOKENIZER_FORMS:
        raise ValueError(f"Invalid tokenizer form: {form}. Valid: {TOKENIZER_FORMS}")
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    # No <0xNN> pieces fit in 256 ids, so byte fallback turns unknown characters into <unk>.
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    # Trained on words so that no piece spans a "▁"; the official layout has no pre-tokenizer (below).
    tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    tok.train_from_iterator(corpus if corpus else CORPUS * 4, trainer)
    assert tok.get_vocab_size() <= vocab_size, f"tokenizer has {tok.get_vocab_size()} ids, model only {vocab_size}"
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    shipped = json.loads(tok.to_str())
    shipped["pre_tokenizer"] = None
    text = json.dumps(shipped, ensure_ascii=False, indent=2)
    (out / "tokenizer.json").write_text(
        as_written_before_tokenizers_020(text) if form == "pre-0.20" else text, encoding="utf-8"
    )
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    config = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
              "model_max_length": 32768, **specials}  # fmt: skip
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (out / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))


def as_written_before_tokenizers_020(tokenizer_json: str) -> str:
    """`tokenizer.json` as tokenizers before 0.20 wrote it, as NV-Embed-v2's (and Mistral-7B's) is.

    The one difference in content: BPE merges were "a b" strings; 0.20 writes [a, b] pairs (so
    that a piece may contain a space). The layout is serde_json's pretty printing, which Python's
    `json.dumps(indent=2, ensure_ascii=False)` reproduces. tests/test_nvembed_tokenizer.py checks
    this mapping byte for byte against the file the official environment writes.
    """
    doc = json.loads(tokenizer_json)
    merges = doc["model"]["merges"]
    if any(" " in part for pair in merges if not isinstance(pair, str) for part in pair):
        raise ValueError("a merge with a space in a piece cannot be written as tokenizers < 0.20 wrote merges")
    doc["model"]["merges"] = [pair if isinstance(pair, str) else " ".join(pair) for pair in merges]
    return json.dumps(doc, ensure_ascii=False, indent=2)


def write_tiny_nvembed_checkpoint(directory, seed: int = 0, shards: int = 2, **overrides) -> Path:
    """Write a random NV-Embed checkpoint into `directory` and return its path.

    `overrides` may set any `TEXT_DEFAULTS` or `LATENT_DEFAULTS` key, `dtype` (of the stored
    weights), `tokenizer` (False skips it) and `tokenizer_form` (one of `TOKENIZER_FORMS`).
    `latent_attention_config` is written with only `model_type` when `latent_minimal=True` (the
    official file's shape, 4096-wide defaults).
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    latent_minimal = overrides.pop("latent_minimal", False)
    unknown = overrides.keys() - TEXT_DEFAULTS.keys() - LATENT_DEFAULTS.keys() - OPTIONS.keys()
    if unknown:
        valid = sorted({**TEXT_DEFAULTS, **LATENT_DEFAULTS, **OPTIONS}) + ["latent_minimal"]
        raise TypeError(f"Unknown overrides {sorted(unknown)}. Valid: {valid}")
    text = {k: overrides.get(k, v) for k, v in TEXT_DEFAULTS.items()}
    latent = {k: overrides.get(k, v) for k, v in LATENT_DEFAULTS.items()}
    options = {k: overrides.get(k, v) for k, v in OPTIONS.items()}
    config = {
        "architectures": ["NVEmbedModel"],
        "auto_map": {"AutoConfig": "configuration_nvembed.NVEmbedConfig", "AutoModel": "modeling_nvembed.NVEmbedModel"},
        "model_type": "nvembed",
        "text_config": {"model_type": "bidir_mistral", "hidden_act": "silu", "sliding_window": 4096, **text},
        "latent_attention_config": {"model_type": "latent_attention", **({} if latent_minimal else latent)},
        "padding_side": "right",
        "is_mask_instruction": True,
        "add_eos": True,
        "add_pad_token": True,
        "torch_dtype": str(options["dtype"]).removeprefix("torch."),
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    if not latent_minimal:
        write_safetensors(tiny_state_dict(text, latent, seed, options["dtype"]), out, shards)
    if options["tokenizer"]:
        write_tiny_tokenizer(out, text["vocab_size"], form=options["tokenizer_form"])
    return out
