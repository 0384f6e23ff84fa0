"""NV-Embed-v2 token ids with the real Mistral-7B-v0.1 vocabulary, in the files users have.

The checkpoint's tokenizer files are written by the official environment itself (transformers
4.42.4 with tokenizers 0.19.1, in `.venv-official-tokenizer`, built by `make official-tokenizer`):
tokenizer.json in the form NV-Embed-v2 ships it, from before tokenizers 0.20. Ids go through
embednv's own path (`load_nvembed_tokenizer` + `NoteTokenizer`, the instruction as prefix and EOS
as suffix) and must equal those the official environment computes, and sentencepiece's. The
guard tests also run on the tiny fixture tokenizer, without the side venv.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("sentencepiece")
pytest.importorskip("mistral_common")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the fixture writers
from mistral_tokenizer import (  # noqa: E402
    OFFICIAL_VERSIONS,
    REQUIRE_OFFICIAL,
    official_ids,
    official_python,
    sentencepiece_ids,
    sentencepiece_model_path,
    write_official_tokenizer,
)
from nvembed_fixtures import (  # noqa: E402
    TOKENIZER_FORMS,
    as_written_before_tokenizers_020,
    write_tiny_nvembed_checkpoint,
    write_tiny_tokenizer,
)

from embednv.embed.tokenize import NoteTokenizer  # noqa: E402
from embednv.models.nvembed import (  # noqa: E402
    DEFAULT_MAX_TOKENS,
    TASK_PRESETS,
    NVEmbedEncoder,
    build_instruction,
    check_keeps_shipped_pipeline,
    load_nvembed_tokenizer,
)

REPO = Path(__file__).resolve().parents[2]
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
    "byte-fallback": "rare 𝔘𝔫𝔦 ꙮ ᚠ, control \x01\x7f",
    "accents": "Café, naïve façade, Ångström, señor, Müller, résumé",
    "cjk": "患者は胸痛を訴えた。病人主诉胸痛。흉통이 있다",
    "arabic": "يشكو المريض من ألم في الصدر منذ ٣ أيام",
    "emoji": "Patient 😀 feels 👍🏽 better ❤️ today",
    "units": "5 mg/kg q8h, 98.6°F, 37 °C, SpO2 95%, 1,000 mL, 2.5×10⁹/L, 10 µg, ½ tab",
}
EDGE = [(instruction, text) for instruction in INSTRUCTIONS.values() for text in CASES.values()]
# Every MTSamples note bare (4,966 notes, 4.2M tokens through each environment: the slowest test
# here), and the first 400 after an instruction too, which changes only the ids at its boundary.
N_WITH_INSTRUCTION = 400


@pytest.fixture(scope="module")
def sp():
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_file=str(sentencepiece_model_path()))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny random model over the full 32,000-id vocabulary, with the official environment's tokenizer files."""
    official_python()  # skips (or, under make test, fails) before writing weights
    path = write_tiny_nvembed_checkpoint(tmp_path_factory.mktemp("mistral") / "ckpt", shards=1, tokenizer=False,
                                         vocab_size=32000)  # fmt: skip
    return write_official_tokenizer(path)


@pytest.fixture(scope="module")
def official(checkpoint) -> dict:
    """The official environment's ids for the edge set and its token counts for each task's instruction."""
    instructions = [build_instruction(task) for task in TASK_PRESETS]
    result = official_ids(checkpoint, [i + t + "</s>" for i, t in EDGE], instructions)
    result["pool_skip"] = dict(zip(TASK_PRESETS, result["tokenize"]))
    return result


@pytest.fixture(scope="module")
def tokenizer(checkpoint):
    return load_nvembed_tokenizer(checkpoint)


def note_tokenizer(tokenizer, instruction: str, max_tokens: int = DEFAULT_MAX_TOKENS, **kwargs) -> NoteTokenizer:
    """As `embednv.embed.tokenize.cached_note_tokenizer` builds it for NV-Embed."""
    return NoteTokenizer(tokenizer, max_tokens, prefix=instruction, suffix=tokenizer.eos_token, **kwargs)


def ours(tokenizer, pairs: list[tuple[str, str]]) -> list[list[int]]:
    """Ids through embednv's path, one window per text (these all fit)."""
    ids = []
    for instruction in dict.fromkeys(i for i, _ in pairs):
        texts = [t for i, t in pairs if i == instruction]
        ids += [n.windows[0] for n in note_tokenizer(tokenizer, instruction)(texts) if len(n.windows) == 1]
    assert len(ids) == len(pairs), "a text needed more than one window"
    return ids


# ----------------------------------------------------------------------------- the files users have


def test_official_files_are_the_pre_020_form(checkpoint, official):
    assert official["versions"] == OFFICIAL_VERSIONS
    text = (checkpoint / "tokenizer.json").read_text(encoding="utf-8")
    doc = json.loads(text)
    merges = doc["model"]["merges"]
    assert len(merges) > 50_000 and all(isinstance(m, str) and m.count(" ") == 1 for m in merges), merges[:3]
    assert doc["pre_tokenizer"] is None
    assert doc["normalizer"] == {
        "type": "Sequence",
        "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
        ],
    }
    assert doc["model"]["byte_fallback"] and len(doc["model"]["vocab"]) == 32000
    config = json.loads((checkpoint / "tokenizer_config.json").read_text())
    assert "add_prefix_space" not in config and config["legacy"] is True
    assert config["tokenizer_class"] == "LlamaTokenizer" and (checkpoint / "special_tokens_map.json").is_file()


def test_the_tiny_fixtures_pre_020_form_is_byte_for_byte_the_official_one(checkpoint):
    """`as_written_before_tokenizers_020` (the tiny fixture's default) turns today's serialisation
    of the official file back into that file, byte for byte."""
    from tokenizers import Tokenizer

    shipped = (checkpoint / "tokenizer.json").read_bytes()
    today = Tokenizer.from_str(shipped.decode("utf-8")).to_str()
    assert '"merges":[["' in today  # pairs: the form today's tokenizers writes
    assert as_written_before_tokenizers_020(today).encode("utf-8") == shipped


def test_loader_keeps_the_shipped_pipeline(checkpoint, tokenizer):
    from tokenizers import Tokenizer

    # Both sides as the installed tokenizers writes them: the file's own form has merges as strings.
    shipped = json.loads(Tokenizer.from_file(str(checkpoint / "tokenizer.json")).to_str())
    loaded = json.loads(tokenizer.backend_tokenizer.to_str())
    for key in ("normalizer", "pre_tokenizer", "model", "post_processor", "decoder", "added_tokens"):
        assert loaded[key] == shipped[key], key
    assert tokenizer.backend_tokenizer.pre_tokenizer is None
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.unk_token) == ("<s>", "</s>", "<unk>")
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (BOS, EOS, EOS)
    batch = tokenizer(["a", "a b c"], padding=True)
    assert batch["input_ids"][0][-1] == EOS and batch["attention_mask"][0][-1] == 0, "not right-padded with EOS"


# ----------------------------------------------------------------------------- ids: official environment


def test_edge_ids_equal_the_official_environment(tokenizer, official):
    names = [f"{name}/{kind}" for kind in INSTRUCTIONS for name in CASES]
    wrong = [name for name, got, want in zip(names, ours(tokenizer, EDGE), official["encode"]) if got != want]
    assert not wrong, f"{len(wrong)} of {len(EDGE)} edge cases differ from the official environment: {wrong}"


def test_mtsamples_ids_equal_the_official_environment(tokenizer, checkpoint, mtsamples_path):
    texts = [t for t in pq.read_table(mtsamples_path, columns=["transcription"]).column(0).to_pylist() if t]
    pairs = [("", t) for t in texts] + [(INSTRUCTIONS["instruction"], t) for t in texts[:N_WITH_INSTRUCTION]]
    want = official_ids(checkpoint, [i + t + "</s>" for i, t in pairs])["encode"]
    wrong = [row for row, (got, expected) in enumerate(zip(ours(tokenizer, pairs), want)) if got != expected]
    assert len(want) == len(pairs) > 5000
    assert not wrong, f"{len(wrong)} of {len(pairs)} encodings differ from the official environment, rows {wrong[:10]}"


@pytest.mark.parametrize("task", TASK_PRESETS)
def test_pool_skip_counts_the_instruction_as_the_official_environment(sp, checkpoint, official, task):
    instruction = build_instruction(task)
    encoder = NVEmbedEncoder(checkpoint, device="cpu", dtype="float32", instruction=instruction)
    assert encoder.n_pool_skip == official["pool_skip"][task] == len(sp.encode(instruction))


def test_both_serialisations_load_with_the_same_ids(checkpoint, tokenizer, official, tmp_path):
    from tokenizers import Tokenizer

    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        (tmp_path / name).write_bytes((checkpoint / name).read_bytes())
    (tmp_path / "tokenizer.json").write_text(Tokenizer.from_file(str(checkpoint / "tokenizer.json")).to_str(True))
    assert isinstance(json.loads((tmp_path / "tokenizer.json").read_text())["model"]["merges"][0], list)
    assert ours(load_nvembed_tokenizer(tmp_path), EDGE) == ours(tokenizer, EDGE) == official["encode"]


# ----------------------------------------------------------------------------- ids: sentencepiece


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


@pytest.mark.parametrize("instruction", INSTRUCTIONS.values(), ids=INSTRUCTIONS.keys())
def test_mtsamples_ids_equal_sentencepiece(sp, tokenizer, mtsamples_path, instruction):
    texts = [t for t in pq.read_table(mtsamples_path, columns=["transcription"]).column(0).to_pylist() if t][:400]
    notes = note_tokenizer(tokenizer, instruction)(texts)
    wrong = [i for i, (text, note) in enumerate(zip(texts, notes))
             if note.windows != [sentencepiece_ids(sp, instruction + text + "</s>")]]  # fmt: skip
    assert not wrong, f"{len(wrong)} of {len(texts)} notes get other ids than sentencepiece, rows {wrong[:10]}"


# ----------------------------------------------------------------------------- the guard


@pytest.fixture(scope="module", params=TOKENIZER_FORMS)
def tiny_tokenizer_dir(request, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp(f"tiny-{request.param}")
    write_tiny_tokenizer(out, form=request.param)
    return out


@pytest.mark.parametrize("form", TOKENIZER_FORMS)
def test_tiny_fixture_writes_either_form_and_both_load(tmp_path, form):
    write_tiny_tokenizer(tmp_path, form=form)
    merges = json.loads((tmp_path / "tokenizer.json").read_text())["model"]["merges"]
    assert merges and all(isinstance(m, str if form == "pre-0.20" else list) for m in merges)
    assert load_nvembed_tokenizer(tmp_path)("a b").input_ids[0] == BOS


def guard_error(directory: Path, tokenizer) -> str:
    file = directory / "tokenizer.json"
    with pytest.raises(RuntimeError) as caught:
        check_keeps_shipped_pipeline(tokenizer, file.read_text(encoding="utf-8"), file)
    message = str(caught.value)
    assert "\n" not in message and str(file) in message
    return message


def transformers_5_llama(directory: Path):
    """What transformers 5 itself makes of the files: its LlamaTokenizer, rebuilt with Metaspace."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))


def swapped_in(directory: Path, pre_tokenizer: str):
    from tokenizers import Tokenizer, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_file(str(directory / "tokenizer.json"))
    backend.pre_tokenizer = getattr(pre_tokenizers, pre_tokenizer)()  # its defaults
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


@pytest.mark.parametrize("pre_tokenizer", ["Metaspace", "ByteLevel"])
def test_guard_catches_a_pre_tokenizer_swapped_in(tiny_tokenizer_dir, pre_tokenizer):
    message = guard_error(tiny_tokenizer_dir, swapped_in(tiny_tokenizer_dir, pre_tokenizer))
    assert f"changed the pre_tokenizer of {tiny_tokenizer_dir / 'tokenizer.json'}" in message
    # The tiny vocabulary has no piece spanning a "▁", so splitting at "▁" (Metaspace) leaves its ids
    # as they were: caught by the component comparison alone. Byte-level pieces change every id.
    assert ("other ids for: lone space" in message) == (pre_tokenizer == "ByteLevel")


def test_guard_catches_transformers_5_llama_rewrite(tiny_tokenizer_dir):
    assert "pre_tokenizer" in guard_error(tiny_tokenizer_dir, transformers_5_llama(tiny_tokenizer_dir))


def test_guard_catches_both_changes_on_the_official_files(checkpoint):
    message = guard_error(checkpoint, transformers_5_llama(checkpoint))
    assert re.search(r"changed the normalizer, pre_tokenizer.* \(other ids for: lone space, leading spaces", message)
    for pre_tokenizer in ("Metaspace", "ByteLevel"):  # Mistral's "▁▁" pieces: Metaspace's split changes ids
        message = guard_error(checkpoint, swapped_in(checkpoint, pre_tokenizer))
        assert "changed the pre_tokenizer of" in message and "space runs" in message, pre_tokenizer


def test_missing_official_environment_skips_or_fails_under_make_test(tmp_path, monkeypatch):
    monkeypatch.delenv(REQUIRE_OFFICIAL, raising=False)
    with pytest.raises(pytest.skip.Exception, match="make official-tokenizer"):
        official_python(tmp_path / "absent")
    monkeypatch.setenv(REQUIRE_OFFICIAL, "1")
    with pytest.raises(pytest.fail.Exception, match="make official-tokenizer"):
        official_python(tmp_path / "absent")


# ----------------------------------------------------------------------------- every entry point


NOTES = {7: "  Patient seen today. BP  120/80.", 3: "患者 😀 <s> here", 11: CASES["tabs-newlines"]}


def test_embedder_and_cli_load_the_official_files(checkpoint, official, tmp_path):
    from test_nvembed_pipeline import embed_cli

    from embednv import Embedder

    embedder = Embedder(model=str(checkpoint), device="cpu", dtype="float32")
    edge = [t for i, t in EDGE if not i]
    assert [n.windows[0] for n in embedder.tokenizer(edge)] == official["encode"][: len(edge)]
    expected = embedder.encode(list(NOTES.values()))

    notes = tmp_path / "notes.parquet"
    pq.write_table(pa.table({"note_id": list(NOTES), "text": list(NOTES.values())}), notes)
    got = embed_cli(notes, tmp_path / "out", checkpoint)  # the local executor (test_run.py compares the two)
    assert sorted(got) == sorted(NOTES)
    for row, note_id in enumerate(NOTES):
        np.testing.assert_allclose(got[note_id], expected[row], atol=1e-5)


@pytest.mark.timeout(600)
def test_gpu_script_dry_run_loads_the_official_files(checkpoint, tmp_path):
    mtsamples = REPO / ".." / "shared" / "data" / "mtsamples.parquet"
    command = [sys.executable, "bench/nvembed_device.py", "--dry-run", "--tokenizer", str(checkpoint),
               "--only", "mtsamples", "--json", str(tmp_path / "acceptance.json")]  # fmt: skip
    command += ["--mtsamples", str(mtsamples)] if mtsamples.is_file() else []
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    sections = json.loads((tmp_path / "acceptance.json").read_text())["sections"]
    # The model loads inside the mtsamples section (run_embed, the local executor): no load section of its own.
    assert {name: s["status"] for name, s in sections.items()} == dict.fromkeys(["checkpoint", "mtsamples"], "ok")
    assert sections["checkpoint"]["tokenizer"].startswith(f"copied from {checkpoint}: tokenizer.json")
    corpus = sections["mtsamples"]
    assert corpus["embedded"] + corpus["errored"] == corpus["rows_in_file"] and corpus["seconds_to_load"] > 0
    assert corpus["embedded"] > 0 and corpus["rows_read_back"] == corpus["embedded"]


def test_bench_checkpoints_get_the_official_tokenizer_files(tmp_path):
    """bench/checkpoint.py (full-size runs, the GPU script) writes NV-Embed-v2's own tokenizer, not
    transformers 5's Metaspace rebuild of it: a lone space is [1, 259], as in the official environment."""
    official_python()
    sys.path.insert(0, str(REPO))
    from bench.checkpoint import write_tokenizer

    said = write_tokenizer(tmp_path / "bench", 32000)
    assert said.startswith("Mistral-7B v1 vocabulary (32000)") and "transformers 4.42.4" in said, said
    reference = write_official_tokenizer(tmp_path / "official")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (tmp_path / "bench" / name).read_bytes() == (reference / name).read_bytes(), name
    tokenizer = load_nvembed_tokenizer(tmp_path / "bench")
    texts = [" ", "  two spaces", "\u2581lead", "a <s> b"]
    assert tokenizer(texts)["input_ids"] == official_ids(tmp_path / "bench", texts)["encode"]
    assert tokenizer(" ")["input_ids"] == [1, 259]
