"""NV-Embed-v2 native model: numerics against an independent reference, loading, errors, safety."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the fixture writers
from nvembed_fixtures import (  # noqa: E402
    LATENT_DEFAULTS,
    TEXT_DEFAULTS,
    tiny_state_dict,
    write_safetensors,
    write_tiny_nvembed_checkpoint,
)

from embednv.errors import ConfigError  # noqa: E402
from embednv.models.nvembed import (  # noqa: E402
    DEFAULT_MAX_TOKENS,
    TASK_PRESETS,
    NVEmbedConfig,
    NVEmbedEncoder,
    NVEmbedModel,
    Packed,
    build_instruction,
    is_nvembed_checkpoint,
    load_nvembed,
    load_nvembed_tokenizer,
    read_nvembed_config,
    resolve_hub_checkpoint,
)

REPO = Path(__file__).resolve().parents[2]
INSTRUCTION = build_instruction("similar-notes")
NOTES = [
    "Patient presents with chest pain.",
    "History of type 2 diabetes mellitus on metformin, hypertension and chronic kidney disease. No acute distress.",
    "Vitals stable.",
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_tiny_nvembed_checkpoint(tmp_path_factory.mktemp("nvembed"), seed=0, shards=2)


@pytest.fixture(scope="module")
def tokenizer(checkpoint):
    return load_nvembed_tokenizer(checkpoint)


@pytest.fixture(scope="module")
def encoder(checkpoint) -> NVEmbedEncoder:
    torch.manual_seed(0)
    return NVEmbedEncoder(checkpoint, device="cpu", dtype="float32", instruction=INSTRUCTION)


def official_inputs(tokenizer, texts, instruction):
    """What the official encode() feeds the model: instruction + text + eos, BOS, right padded."""
    return tokenizer([instruction + t + tokenizer.eos_token for t in texts], padding=True, truncation=True,
                     max_length=DEFAULT_MAX_TOKENS, return_tensors="pt")  # fmt: skip


# ----------------------------------------------------------------------------- independent reference


LATENT_OFFICIAL = {"num_cross_heads": 8, "cross_dim_head": 4096}  # the official class defaults


class Float64Weights:
    """A checkpoint's tensors by name, each read from disk as float64 when asked: a real-width
    checkpoint never sits in memory whole (as float64 it would take 8 bytes a weight)."""

    def __init__(self, checkpoint: Path):
        from safetensors import safe_open

        self.files: dict[str, Path] = {}
        for file in sorted(checkpoint.glob("*.safetensors")):
            with safe_open(file, framework="pt") as handle:
                self.files.update(dict.fromkeys(handle.keys(), file))

    def __getitem__(self, key: str) -> torch.Tensor:
        from safetensors import safe_open

        with safe_open(self.files[key], framework="pt") as handle:
            return handle.get_tensor(key).double()


def reference_embed(checkpoint: Path, ids: list[int], n_skip: int) -> np.ndarray:
    """NV-Embed forward for one unpadded sequence in float64: `reference_embed_all` of one."""
    return reference_embed_all(checkpoint, [ids], n_skip)[0]


def reference_embed_all(checkpoint: Path, sequences: list[list[int]], n_skip: int) -> np.ndarray:
    """NV-Embed forward for unpadded sequences in float64, written from the paper/official code
    with explicit loops and softmaxes, reading the raw safetensors and config.json only. Every
    step but self-attention, RoPE and pooling works row by row, so the sequences' tokens are
    stacked and each weight is read, and the latents' keys and values made, once for all."""
    raw = json.loads((checkpoint / "config.json").read_text())
    text, lat = raw["text_config"], raw["latent_attention_config"]
    lat = {**LATENT_OFFICIAL, **lat}  # the official class defaults where the config is silent
    w = Float64Weights(checkpoint)
    d, nh, nkv = text["hidden_size"], text["num_attention_heads"], text["num_key_value_heads"]
    hd, eps, theta = d // nh, text["rms_norm_eps"], text["rope_theta"]
    starts = np.cumsum([0] + [len(ids) for ids in sequences])
    spans = [slice(a, b) for a, b in zip(starts[:-1], starts[1:])]

    def rms_norm(x, weight):
        return weight * (x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps))

    def layer_norm(x, weight, bias):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-5) * weight + bias

    def softmax(s):
        e = torch.exp(s - s.max(-1, keepdim=True).values)
        return e / e.sum(-1, keepdim=True)

    def rope(v):  # v (T, hd), one sequence: rotate the pair (i, i + hd/2) by angle pos * theta^(-2i/hd)
        half = hd // 2
        angle = torch.arange(v.shape[0], dtype=torch.float64)[:, None] * theta ** (
            -2 * torch.arange(half, dtype=torch.float64) / hd
        )
        x1, x2 = v[:, :half], v[:, half:]
        return torch.cat(
            [x1 * torch.cos(angle) - x2 * torch.sin(angle), x1 * torch.sin(angle) + x2 * torch.cos(angle)], -1
        )

    x = w["embedding_model.embed_tokens.weight"][[i for ids in sequences for i in ids]]  # (sum of T, d)
    for layer in range(text["num_hidden_layers"]):
        p = f"embedding_model.layers.{layer}."
        h = rms_norm(x, w[p + "input_layernorm.weight"])
        q, k, v = (h @ w[p + f"self_attn.{n}_proj.weight"].T for n in "qkv")
        attended = []
        for t in spans:  # each sequence attends to itself only
            heads = []
            for head in range(nh):
                kv = head // (nh // nkv)  # query head -> its KV group
                qh = rope(q[t, head * hd : (head + 1) * hd])
                kh = rope(k[t, kv * hd : (kv + 1) * hd])
                heads.append(softmax(qh @ kh.T / math.sqrt(hd)) @ v[t, kv * hd : (kv + 1) * hd])  # no causal mask
            attended.append(torch.cat(heads, -1))
        x = x + torch.cat(attended) @ w[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"])
        gate, up = h @ w[p + "mlp.gate_proj.weight"].T, h @ w[p + "mlp.up_proj.weight"].T
        x = x + (gate * torch.sigmoid(gate) * up) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["embedding_model.norm.weight"])

    p = "latent_attention_model.cross_attend_blocks."
    n_heads, dh = lat["num_cross_heads"], lat["cross_dim_head"]
    inner = n_heads * dh
    queries = layer_norm(x, w[p + "0.norm.weight"], w[p + "0.norm.bias"]) @ w[p + "0.fn.to_q.weight"].T
    latents = w["latent_attention_model.latents"]
    context = layer_norm(latents, w[p + "0.norm_context.weight"], w[p + "0.norm_context.bias"])
    kv = context @ w[p + "0.fn.to_kv.weight"].T
    keys, values = kv[:, :inner], kv[:, inner:]
    outs = []
    for head in range(n_heads):
        cols = slice(head * dh, (head + 1) * dh)
        outs.append(softmax(queries[:, cols] @ keys[:, cols].T / math.sqrt(dh)) @ values[:, cols])
    x = x + torch.cat(outs, -1) @ w[p + "0.fn.to_out.weight"].T
    y = layer_norm(x, w[p + "1.norm.weight"], w[p + "1.norm.bias"])
    y = y @ w[p + "1.fn.net.0.weight"].T + w[p + "1.fn.net.0.bias"]
    value, gate = y[:, : 4 * d], y[:, 4 * d :]
    y = value * 0.5 * gate * (1 + torch.erf(gate / math.sqrt(2)))
    x = x + y @ w[p + "1.fn.net.2.weight"].T + w[p + "1.fn.net.2.bias"]
    pooled = torch.stack([x[t][n_skip:].mean(0) for t in spans])
    return (pooled / pooled.norm(dim=-1, keepdim=True)).numpy()


# ----------------------------------------------------------------------------- numerics


def test_matches_independent_reference(checkpoint, tokenizer, encoder):
    ids = official_inputs(tokenizer, NOTES, INSTRUCTION)
    sequences = [row[mask.bool()].tolist() for row, mask in zip(ids["input_ids"], ids["attention_mask"])]
    got = encoder.embed(sequences)
    assert got.shape == (3, 64) and got.dtype == np.float32
    want = reference_embed_all(checkpoint, sequences, encoder.n_pool_skip)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_document_without_instruction_matches_reference(checkpoint, tokenizer):
    encoder = NVEmbedEncoder(checkpoint, device="cpu", dtype="float32", instruction="")
    assert encoder.n_pool_skip == 0
    ids = tokenizer(NOTES[0] + tokenizer.eos_token)["input_ids"]
    np.testing.assert_allclose(encoder.embed([ids])[0], reference_embed(checkpoint, ids, 0), atol=1e-5)


def test_backbone_is_bidirectional(encoder):
    torch.manual_seed(0)
    ids = torch.randint(3, 200, (1, 12))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % 200
    with torch.inference_mode():
        first = encoder.model.embedding_model(Packed.from_padded(ids))[0]
        first_changed = encoder.model.embedding_model(Packed.from_padded(changed))[0]
    assert (first - first_changed).abs().max() > 1e-3, "the first token did not see the last: causal mask?"


def test_pool_mask_skips_instruction_from_position_zero(tokenizer, encoder):
    n = len(tokenizer.tokenize(INSTRUCTION))
    assert encoder.n_pool_skip == n > 0
    ids = official_inputs(tokenizer, NOTES, INSTRUCTION)
    official_pool = ids["attention_mask"].clone()
    official_pool[:, :n] = 0  # the official prepare_kwargs_from_batch, BOS at position 0 included
    sequences = [row[mask.bool()].tolist() for row, mask in zip(ids["input_ids"], ids["attention_mask"])]
    got = encoder.pack(sequences)  # no padding: the official batch's real tokens, end to end
    official = Packed.from_padded(ids["input_ids"], ids["attention_mask"], official_pool)
    assert torch.equal(got.ids, official.ids) and torch.equal(got.cu_seqlens, official.cu_seqlens)
    assert torch.equal(got.positions, official.positions)
    assert torch.equal(got.pool_rows, official.pool_rows)  # the official pool mask's tokens, and only those
    assert torch.equal(got.pool_owner, official.pool_owner)


def test_pipeline_tokenizer_matches_official_batch(checkpoint, tokenizer, encoder):
    from embednv.embed.tokenize import NoteTokenizer

    note_tokenizer = NoteTokenizer(tokenizer, DEFAULT_MAX_TOKENS, prefix=INSTRUCTION, suffix=tokenizer.eos_token)
    notes = note_tokenizer(NOTES)
    sequences = [note.windows[0] for note in notes]
    ids = official_inputs(tokenizer, NOTES, INSTRUCTION)
    assert sequences == [row[mask.bool()].tolist() for row, mask in zip(ids["input_ids"], ids["attention_mask"])]
    pool = ids["attention_mask"].clone()
    pool[:, : encoder.n_pool_skip] = 0
    with torch.inference_mode():
        official = encoder.model(Packed.from_padded(ids["input_ids"], ids["attention_mask"], pool)).numpy()
    np.testing.assert_allclose(encoder.embed(sequences), official, atol=1e-5)


def test_same_embedding_alone_or_in_padded_batch(tokenizer, encoder):
    ids = official_inputs(tokenizer, NOTES, INSTRUCTION)
    sequences = [row[mask.bool()].tolist() for row, mask in zip(ids["input_ids"], ids["attention_mask"])]
    batch = encoder.embed(sequences)
    for i, seq in enumerate(sequences):
        np.testing.assert_allclose(encoder.embed([seq])[0], batch[i], atol=1e-5)
    np.testing.assert_allclose(encoder.embed(sequences[::-1])[::-1], batch, atol=1e-5)
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)


def test_encoder_edge_cases(encoder):
    assert encoder.embed([]).shape == (0, 64)
    with pytest.raises(ValueError, match="nothing would be pooled"):
        encoder.embed([[1] * encoder.n_pool_skip])
    with pytest.raises(ValueError, match="model window is 512"):
        encoder.embed([[1] * 513])


# ----------------------------------------------------------------------------- packed batches, GPU path


class OpLog(TorchDispatchMode):
    """Every aten (and custom) op a forward runs, with its tensor arguments' shapes: what the kernels see."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, list, dict]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        shape = lambda a: tuple(a.shape) if isinstance(a, torch.Tensor) else a  # noqa: E731
        self.calls.append((str(func), [shape(a) for a in args], {k: shape(v) for k, v in (kwargs or {}).items()}))
        return func(*args, **(kwargs or {}))

    def named(self, part: str) -> list[tuple[str, list, dict]]:
        return [c for c in self.calls if part in c[0]]


UNEQUAL = [[1] + [(7 * i + j) % 250 + 3 for j in range(n)] for i, n in enumerate((70, 52, 52, 47))]


def check_packed_forward(log: OpLog, sequences, n_skip: int, n_layers: int, n_latents: int, inner: int):
    """No matmul sees a padded row, the head only the pooled ones; attention takes no mask; K/V are not copied."""
    n_real = sum(map(len, sequences))
    n_pooled = sum(len(s) - n_skip for s in sequences)
    rows = Counter(c[1][0][0] for c in log.named("aten.linear"))  # each projection's input rows
    assert set(rows) <= {n_real, n_pooled, n_latents}, f"a matmul saw {rows} rows; real {n_real}, pooled {n_pooled}"
    to_q = [c for c in log.named("aten.linear") if c[1][1][0] == inner]
    assert sum(c[1][0][0] for c in to_q) == n_pooled  # the head ran on pooled rows, each once
    attention = log.named("scaled_dot_product") + log.named("varlen_attn")
    assert len(attention) >= n_layers + 1  # the layers', then the head's cross-attention
    for _, args, kwargs in log.named("scaled_dot_product"):
        assert len(args) == 3 and "attn_mask" not in kwargs, "an attention call took a mask"
    assert not log.named("repeat_interleave") and not [c for c in log.named("expand") if len(c[1][0]) > 2]


def test_no_padded_token_enters_a_matmul_and_attention_takes_no_mask(checkpoint, encoder):
    """The CPU path: packed rows, one unmasked SDPA per run of equally long windows."""
    log = OpLog()
    with torch.inference_mode(), log:
        got = encoder.embed(UNEQUAL, instruction=INSTRUCTION)
    cfg = encoder.model.cfg
    inner = cfg.latent.num_cross_heads * cfg.latent.cross_dim_head
    check_packed_forward(log, UNEQUAL, encoder.pool_skip(INSTRUCTION), 2, cfg.latent.num_latents_value, inner)
    backbone = [c for c in log.named("scaled_dot_product") if c[1][0][1] == cfg.text.num_attention_heads]
    assert [c[1][0][0] for c in backbone] == [1, 2, 1] * 2  # the two windows of 53 tokens share one call
    assert all(c[1][1][1] == cfg.text.num_key_value_heads and c[2]["enable_gqa"] for c in backbone)
    want = reference_embed_all(checkpoint, UNEQUAL, encoder.pool_skip(INSTRUCTION))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_gpu_path_runs_one_varlen_flash_call_per_layer(checkpoint):
    """The CUDA path's code on the meta device (shapes only, no GPU): torch's varlen FlashAttention
    over the packed rows with cumulative offsets, KV heads as they are, no mask, no padded row."""
    cfg = read_nvembed_config(checkpoint)
    with torch.device("meta"):
        model = NVEmbedModel(cfg).to(torch.bfloat16)
    n_skip = 5
    batch = Packed.from_sequences(UNEQUAL, n_skip)
    log = OpLog()
    with torch.inference_mode(), log:
        out = model(batch.to(torch.device("meta")), kernel="flash")
    assert out.shape == (4, 64) and out.dtype == torch.float32
    inner = cfg.latent.num_cross_heads * cfg.latent.cross_dim_head
    check_packed_forward(log, UNEQUAL, n_skip, 2, cfg.latent.num_latents_value, inner)
    flash = log.named("varlen_attn")
    assert len(flash) == cfg.text.num_hidden_layers
    n = sum(map(len, UNEQUAL))
    for _, args, _ in flash:
        q, k, v, cu_q, cu_k, max_q, max_k = args[:7]
        assert (q, k, v) == ((n, 4, 16), (n, 2, 16), (n, 2, 16))  # 2 KV heads for 4 query heads: no copy
        assert cu_q == cu_k == (5,) and max_q == max_k == 71
    assert batch.cu_seqlens.tolist() == [0, 71, 124, 177, 225] and batch.cu_seqlens.dtype == torch.int32
    with pytest.raises(ValueError, match="Invalid attention kernel: 'xformers'. Valid: auto, flash, sdpa"):
        model(batch.to(torch.device("meta")), kernel="xformers")


def test_chunks_bound_the_head_and_mlp_rows_and_change_nothing(encoder, monkeypatch):
    import embednv.models.nvembed as nvembed

    whole = encoder.embed(UNEQUAL, instruction=INSTRUCTION)
    inner = encoder.model.cfg.latent.num_cross_heads * encoder.model.cfg.latent.cross_dim_head
    monkeypatch.setattr(nvembed, "CHUNK_BYTES", 30 * inner * 4)  # 30 rows of float32 per chunk
    log = OpLog()
    with torch.inference_mode(), log:
        chunked = encoder.embed(UNEQUAL, instruction=INSTRUCTION)
    to_q = [c[1][0][0] for c in log.named("aten.linear") if c[1][1][0] == inner]
    n_pooled = sum(len(s) - encoder.pool_skip(INSTRUCTION) for s in UNEQUAL)
    assert max(to_q) == 30 and sum(to_q) == n_pooled and len(to_q) == -(-n_pooled // 30)
    width = encoder.model.cfg.text.intermediate_size  # the MLP is cut the same way: 11 rows of 128 columns
    gate_up = [c[1][0][0] for c in log.named("aten.linear") if c[1][1][0] == width]
    assert max(gate_up) == 30 * inner // width and sum(gate_up) == 2 * 2 * sum(map(len, UNEQUAL))  # 2 layers x 2
    np.testing.assert_allclose(chunked, whole, atol=1e-6)  # chunk edges inside a window included


def test_compiled_blocks_embed_as_eager(checkpoint, encoder):
    """`compile=True` is an option, never a requirement: the same vectors, and a new batch shape
    (another packed length N) runs without a failure or a wrong answer."""
    compiled = NVEmbedEncoder(checkpoint, device="cpu", dtype="float32", compile=True)
    for windows in (UNEQUAL, UNEQUAL[1:3]):
        want = encoder.embed(windows, instruction=INSTRUCTION)
        np.testing.assert_allclose(compiled.embed(windows, instruction=INSTRUCTION), want, atol=1e-5)


def test_packed_from_padded_equals_from_sequences():
    ids = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 2, 2, 2]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    padded = Packed.from_padded(ids, mask, torch.ones_like(mask) * (torch.arange(5) >= 1))
    direct = Packed.from_sequences([[1, 5, 6, 7, 2], [1, 8, 2]], n_pool_skip=1)
    for name in ("ids", "positions", "cu_seqlens", "pool_rows", "pool_owner"):
        assert torch.equal(getattr(padded, name), getattr(direct, name)), name
    assert direct.positions.tolist() == [0, 1, 2, 3, 4, 0, 1, 2] and direct.pool_rows.tolist() == [1, 2, 3, 4, 6, 7]
    assert direct.runs == ((0, 1, 5), (5, 1, 3)) and direct.pool_offsets == (0, 4, 6)
    with pytest.raises(AssertionError, match="padding must be on the right"):
        Packed.from_padded(ids, torch.tensor([[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]]))


@pytest.mark.timeout(900)
def test_real_width_matches_the_reference(tmp_path, monkeypatch):
    """NV-Embed-v2's real widths (4096 wide, 32 heads over 8 KV heads, 14,336 MLP, the 512-latent,
    8 x 4096 head) at one layer: the packed path, with the head cut into chunks of 7 rows, equals
    the float64 reference; vectors a cosine of at least 0.9999 from it (they are ~1e-6 apart)."""
    import gc

    import embednv.models.nvembed as nvembed

    sys.path.insert(0, str(REPO))
    from bench.checkpoint import OFFICIAL_CONFIG, write_random_checkpoint

    text = {**OFFICIAL_CONFIG["text_config"], "num_hidden_layers": 1, "vocab_size": 256}
    write_random_checkpoint(
        tmp_path, {**OFFICIAL_CONFIG, "text_config": text}, shards=2
    )  # bfloat16, as the official files
    monkeypatch.setattr(nvembed, "CHUNK_BYTES", 7 * 8 * 4096 * 4)
    n_skip = 4
    sequences = [UNEQUAL[1][:11], UNEQUAL[2][:9]]
    model = load_nvembed(tmp_path, "cpu", "float32")
    with torch.inference_mode():
        got = model(Packed.from_sequences(sequences, n_skip)).numpy()
    del model
    gc.collect()  # the reference reads one weight at a time: never two copies of the model in memory
    want = reference_embed_all(tmp_path, sequences, n_skip)
    np.testing.assert_allclose(np.sum(got * want, axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(got, want, atol=1e-5)


# ----------------------------------------------------------------------------- config


def test_official_latent_defaults_when_omitted(tmp_path):
    path = write_tiny_nvembed_checkpoint(tmp_path, latent_minimal=True, tokenizer=False, hidden_size=4096,
                                         vocab_size=32000, intermediate_size=14336, num_hidden_layers=32,
                                         num_attention_heads=32, num_key_value_heads=8)  # fmt: skip
    raw = json.loads((path / "config.json").read_text())
    assert raw["latent_attention_config"] == {"model_type": "latent_attention"}
    cfg = NVEmbedConfig.from_checkpoint_config(raw)
    lat = cfg.latent
    assert (lat.num_latents_value, lat.num_cross_heads, lat.cross_dim_head) == (512, 8, 4096)
    assert (lat.latent_dim, lat.hidden_dim, lat.output_normalize) == (4096, 4096, True)
    assert cfg.output_dim == 4096 and cfg.text.head_dim == 128 and cfg.text.rms_norm_eps == 1e-5
    with torch.device("meta"):
        model = NVEmbedModel(cfg)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["latent_attention_model.cross_attend_blocks.0.fn.to_q.weight"] == (32768, 4096)
    assert shapes["latent_attention_model.cross_attend_blocks.0.fn.to_kv.weight"] == (65536, 4096)
    assert shapes["latent_attention_model.cross_attend_blocks.1.fn.net.0.weight"] == (32768, 4096)
    assert len(shapes) == 2 + 9 * 32 + 14  # backbone: embed, norm, 9 per layer; head: 14 tensors
    assert 7.84e9 < sum(v.numel() for v in model.parameters()) < 7.86e9  # "7.85B" on the model card


def test_is_nvembed_checkpoint(checkpoint, tmp_path):
    assert is_nvembed_checkpoint(checkpoint)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert not is_nvembed_checkpoint(tmp_path) and not is_nvembed_checkpoint(tmp_path / "nowhere")


def test_build_instruction():
    assert build_instruction("specialty") == f"Instruct: {TASK_PRESETS['specialty']}\nQuery: "
    free = "Given a question, retrieve passages"
    assert build_instruction(free) == f"Instruct: {free}\nQuery: "
    assert build_instruction(INSTRUCTION) == INSTRUCTION
    assert build_instruction(None) == build_instruction("") == ""
    with pytest.raises(ConfigError, match="similar-notes"):  # a user's option: one line at the CLI, exit 2
        build_instruction("speciality")


# ----------------------------------------------------------------------------- loading


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_sharded_equals_single_file(tmp_path, encoder):
    single = write_tiny_nvembed_checkpoint(tmp_path / "single", seed=0, shards=1, tokenizer=False)
    sharded = write_tiny_nvembed_checkpoint(tmp_path / "sharded", seed=0, shards=3, tokenizer=False)
    a, b = state(load_nvembed(single, "cpu", "float32")), state(load_nvembed(sharded, "cpu", "float32"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(a[k], v) for k, v in encoder.model.state_dict().items())


def test_bfloat16_loading(tmp_path):
    path = write_tiny_nvembed_checkpoint(tmp_path, shards=2, tokenizer=False)
    model = load_nvembed(path, "cpu", "bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    ids = torch.randint(3, 200, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        out = model(Packed.from_padded(ids, None, torch.ones(2, 9, dtype=torch.bool)))
    assert out.dtype == torch.float32 and torch.allclose(out.norm(dim=1), torch.ones(2))


def edit_config(path: Path, **changes) -> None:
    config = json.loads((path / "config.json").read_text())
    for key, value in changes.items():
        target = config if key in config else config["text_config"]
        target[key] = value
    (path / "config.json").write_text(json.dumps(config))


def test_error_missing_shard(tmp_path):
    path = write_tiny_nvembed_checkpoint(tmp_path, shards=2, tokenizer=False)
    (path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model-00002-of-00002.safetensors"):
        load_nvembed(path, "cpu", "float32")


def test_error_missing_and_unexpected_keys(tmp_path):
    sd = tiny_state_dict(TEXT_DEFAULTS, LATENT_DEFAULTS)
    extra = write_tiny_nvembed_checkpoint(tmp_path / "extra", shards=1, tokenizer=False)
    write_safetensors({**sd, "lm_head.weight": torch.zeros(4, 4)}, extra, shards=1)
    with pytest.raises(ValueError, match="unexpected.*lm_head.weight"):
        load_nvembed(extra, "cpu", "float32")
    missing = write_tiny_nvembed_checkpoint(tmp_path / "missing", shards=1, tokenizer=False)
    write_safetensors({k: v for k, v in sd.items() if k != "embedding_model.norm.weight"}, missing, shards=1)
    with pytest.raises(ValueError, match="missing.*embedding_model.norm.weight"):
        load_nvembed(missing, "cpu", "float32")


def test_error_shape_mismatch(tmp_path):
    path = write_tiny_nvembed_checkpoint(tmp_path, shards=2, tokenizer=False)
    edit_config(path, intermediate_size=96)
    with pytest.raises(ValueError, match=r"layers\.0\.mlp\.\w+_proj\.weight has shape \(\d+, \d+\), the config"):
        load_nvembed(path, "cpu", "float32")


def test_error_wrong_model_type(tmp_path):
    path = write_tiny_nvembed_checkpoint(tmp_path, shards=2, tokenizer=False)
    edit_config(path, model_type="mistral")
    with pytest.raises(ValueError, match="model_type='mistral'.*'nvembed'"):
        load_nvembed(path, "cpu", "float32")


def test_loading_never_runs_checkpoint_code(tmp_path):
    path = write_tiny_nvembed_checkpoint(tmp_path / "ckpt", shards=2)
    sentinel = tmp_path / "code_ran"
    payload = f"open({str(sentinel)!r}, 'w').write('ran')\nraise RuntimeError('checkpoint code executed')\n"
    for name in ("modeling_nvembed.py", "configuration_nvembed.py", "tokenization_nvembed.py", "__init__.py"):
        (path / name).write_text(payload)
    assert "auto_map" in json.loads((path / "config.json").read_text())  # as the official config.json
    NVEmbedEncoder(path, device="cpu", dtype="float32", instruction=INSTRUCTION).embed([[1, 5, 6, 2] * 5])
    assert not sentinel.exists()
    shipped = {"modeling_nvembed", "configuration_nvembed", "tokenization_nvembed"}
    assert not [m for m in sys.modules if m.rpartition(".")[2] in shipped or m.startswith("transformers_modules")]


LOAD_PEAK = textwrap.dedent(
    """
    import json, sys, gc
    import torch, safetensors.torch
    from embednv.models.nvembed import NVEmbedModel, load_nvembed, read_nvembed_config

    def status(field):  # kB -> bytes, from the kernel's own accounting of this process
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

    with torch.device("meta"):  # PyTorch imports its meta kernels (~800 modules, ~65 MB) on first use:
        NVEmbedModel(read_nvembed_config(sys.argv[1]))  # a fixed cost, so it goes into the baseline
    gc.collect()
    try:  # reset VmHWM to the current RSS, so the peak below is the loading peak
        open("/proc/self/clear_refs", "w").write("5")
    except OSError:
        pass  # without a reset the import peak may count too: the figure only gets more conservative
    before = status("VmRSS")
    model = load_nvembed(sys.argv[1], "cpu", sys.argv[2])
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    print(json.dumps({"peak_delta": status("VmHWM") - before, "model_bytes": size}))
    """
)


@pytest.fixture(scope="module")
def big_checkpoint(tmp_path_factory) -> Path:
    """~230 MB of bf16 weights in one file (one file is the hard case: sharding only lowers the peak)."""
    return write_tiny_nvembed_checkpoint(
        tmp_path_factory.mktemp("big"), shards=1, tokenizer=False, dtype=torch.bfloat16, vocab_size=8192,
        hidden_size=1024, intermediate_size=2816, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2,
        num_latents_value=64, cross_dim_head=512, latent_dim=1024, hidden_dim=1024,
    )  # fmt: skip


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_loading_peak_host_memory(big_checkpoint, dtype):
    """Peak RSS growth while loading `big_checkpoint`, relative to the size of the loaded weights.

    VmHWM (peak resident set, file-backed pages included, so a memory-mapped file that stays
    resident is caught) minus VmRSS just before loading, measured in a fresh process after the
    imports. float32 from the bf16 file checks that the cast never holds a second full copy.
    """
    if not Path("/proc/self/status").exists():
        pytest.skip("needs Linux /proc")
    out = subprocess.run([sys.executable, "-c", LOAD_PEAK, str(big_checkpoint), dtype], capture_output=True, text=True,
                         cwd=REPO, timeout=120, check=True)  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    ratio = result["peak_delta"] / result["model_bytes"]
    peak_mib, weights_mib = result["peak_delta"] / 2**20, result["model_bytes"] / 2**20
    print(f"{dtype}: peak host memory {peak_mib:.0f} MiB for {weights_mib:.0f} MiB of weights = {ratio:.3f}x")
    assert result["model_bytes"] > (200e6 if dtype == "bfloat16" else 400e6)
    assert ratio <= 1.3, f"peak {result['peak_delta']} B is {ratio:.2f}x the {result['model_bytes']} B loaded"


# ----------------------------------------------------------------------------- hub, bench


def test_resolve_hub_checkpoint_from_cache(tmp_path):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--org--tiny-nvembed"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    path, revision = resolve_hub_checkpoint("org/tiny-nvembed", cache_dir=str(tmp_path))
    assert Path(path) == repo / "snapshots" / commit and revision == commit
    with pytest.raises(FileNotFoundError, match="org/absent.*not in the local Hugging Face cache"):
        resolve_hub_checkpoint("org/absent", cache_dir=str(tmp_path))
