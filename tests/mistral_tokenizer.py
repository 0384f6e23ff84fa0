"""The real Mistral-7B-v0.1 vocabulary as NV-Embed-v2 ships it, written and run by the official environment.

NV-Embed-v2's model card pins transformers 4.42.4 (so tokenizers 0.19); `make official-tokenizer`
builds that environment in a side venv, `.venv-official-tokenizer`. Run with its python, this file
converts the sentencepiece model shipped in the mistral-common wheel (`tokenizer.model.v1`, the
Mistral-7B-v0.1 vocabulary NV-Embed-v2's tokenizer was converted from) into checkpoint tokenizer
files as that environment writes them, or gives the ids that environment computes for texts.
From the test venv, `write_official_tokenizer` and `official_ids` run it. `sentencepiece_ids` is
a second, independent reference.

Only the standard library is imported at module level: the side venv has neither pytest nor embednv.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

SPECIALS = {"<unk>": 0, "<s>": 1, "</s>": 2}  # ids in Mistral-7B-v0.1, as the official added_tokens
OFFICIAL_VENV = Path(__file__).resolve().parents[1] / ".venv-official-tokenizer"
OFFICIAL_VERSIONS = {"transformers": "4.42.4", "tokenizers": "0.19.1"}
REQUIRE_OFFICIAL = "EMBEDNV_REQUIRE_OFFICIAL_TOKENIZER"  # set by `make test`: absent venv = failure, not skip


def sentencepiece_model_path() -> Path:
    """The sentencepiece model inside the installed mistral-common wheel, found without importing it."""
    spec = importlib.util.find_spec("mistral_common")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("mistral-common is not installed (it is in the `test` extra)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "tokenizer.model.v1"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: this mistral-common wheel no longer ships the v1 model")
    return path


# ----------------------------------------------------------------------------- test venv side


def official_python(venv: Path = OFFICIAL_VENV) -> Path:
    """The side venv's python; skips the test without it, or fails it under `make test`."""
    import pytest

    python = venv / "bin" / "python"
    if python.is_file():
        return python
    why = f"the official tokenizer environment {venv} is missing: run `make official-tokenizer`"
    if os.environ.get(REQUIRE_OFFICIAL):
        pytest.fail(f"{why} ({REQUIRE_OFFICIAL} is set: make test builds it first)", pytrace=False)
    pytest.skip(why)


def _run_official(*args: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "PYTHONPATH": ""}
    done = subprocess.run([str(official_python()), __file__, *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"the official tokenizer environment failed ({args[0]}): {done.stderr[-2000:]}")


def write_official_tokenizer(out: Path) -> Path:
    """NV-Embed-v2's tokenizer files, as transformers 4.42 / tokenizers 0.19 write them, into `out`."""
    _run_official("convert", str(sentencepiece_model_path()), str(out))
    return out


def official_ids(checkpoint: Path, encode: list[str], tokenize: list[str] = ()) -> dict:
    """What the official environment gives, loading `checkpoint` as NV-Embed-v2's code does
    (`AutoTokenizer.from_pretrained`): {"encode": ids of each text with BOS, "tokenize": the
    number of tokens `tokenize()` gives (the official pool mask's count), "versions": {...}}."""
    request, result = (
        checkpoint.parent / f"{checkpoint.name}-request.json",
        checkpoint.parent / f"{checkpoint.name}-ids.json",
    )
    request.write_text(json.dumps({"encode": list(encode), "tokenize": list(tokenize)}), encoding="utf-8")
    _run_official("encode", str(checkpoint), str(request), str(result))
    return json.loads(result.read_text(encoding="utf-8"))


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


# ----------------------------------------------------------------------------- official venv side


def convert(model_file: str, out: str) -> None:
    """The slow LlamaTokenizer on Mistral's sentencepiece model, converted to the fast one, saved.

    legacy=True and add_prefix_space=True give NV-Embed-v2's pipeline: normalizer Prepend("▁") +
    Replace(" ", "▁"), no pre-tokenizer, and a decoder that strips the prepended space. Its files
    predate the `add_prefix_space` option, so their tokenizer_config.json does not name it; with it
    named, 4.42 would rebuild the tokenizer from tokenizer.model instead of loading tokenizer.json.
    """
    from transformers import LlamaTokenizerFast

    tokenizer = LlamaTokenizerFast(
        vocab_file=model_file, legacy=True, add_prefix_space=True, additional_special_tokens=[]
    )
    tokenizer.save_pretrained(out)
    config_file = Path(out) / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    del config["add_prefix_space"]
    # As save_pretrained writes it.
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def encode(checkpoint: str, request_file: str, result_file: str) -> None:
    import tokenizers
    import transformers
    from transformers import AutoTokenizer, LlamaTokenizerFast

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    assert isinstance(tokenizer, LlamaTokenizerFast), type(tokenizer)
    request = json.loads(Path(request_file).read_text(encoding="utf-8"))
    result = {
        "versions": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__},
        "encode": tokenizer(request["encode"])["input_ids"] if request["encode"] else [],
        "tokenize": [len(tokenizer.tokenize(text)) for text in request["tokenize"]],
    }
    Path(result_file).write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    commands = {"convert": convert, "encode": encode}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: {sys.argv[0]} convert MODEL OUT | encode CHECKPOINT REQUEST RESULT")
    commands[sys.argv[1]](*sys.argv[2:])
