# embednv: `make embed-corpus` and `make test` each work as the first command on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
# cuML publishes wheels for Linux on x86_64 and aarch64 only.
CUML_PLATFORM := $(filter Linux-x86_64 Linux-aarch64,$(shell uname -s)-$(shell uname -m))

INPUT ?= data/sample_corpus.parquet
SAMPLE_N ?= 2000
OUT ?= out/embeddings
MODEL ?= auto
MAP_OUT ?= out/map
ARGS ?=

.PHONY: setup gpu-extra official-tokenizer device-wheels device-env device-files test test-fast lint embed-corpus map-corpus bench bench-map bench-index bench-update bench-map-update bench-map-1m bench-1m bench-ops check-fullsize clean browser

setup: $(STAMP)

# Re-runs only when pyproject.toml changes: quick when already done.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
ifeq ($(HAS_GPU),)
	# No NVIDIA GPU: the CPU wheel, not the multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
endif
	$(PY) -m pip install -q -e ".[test]"
	@$(MAKE) --no-print-directory gpu-extra
	touch $(STAMP)

# cuML (the `gpu` extra) for the map's GPU path, only where it can work; never fails setup:
# without it `embednv map` runs on CPU. One line says which, and why.
gpu-extra:
ifeq ($(HAS_GPU),)
	@echo "setup: cuML not installed: no NVIDIA GPU (nvidia-smi); embednv map runs on CPU"
else ifeq ($(CUML_PLATFORM),)
	@echo "setup: cuML not installed: no cuML wheels for $$(uname -s) $$(uname -m); embednv map runs on CPU"
else
	@if $(PY) -m pip install -q -e ".[test,gpu]" >$(VENV)/gpu-extra.log 2>&1; then \
	  echo "setup: cuML installed (the gpu extra): embednv map runs PCA, k-means and t-SNE on the GPU"; \
	else \
	  echo "setup: cuML not installed: pip failed ($$(grep -m1 '^ERROR' $(VENV)/gpu-extra.log || tail -n1 $(VENV)/gpu-extra.log)); embednv map runs on CPU; see $(VENV)/gpu-extra.log"; \
	fi
endif

# Chromium (Debian) for the map.html browser test; skipped quietly where apt is unavailable.
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium not installed: the browser test will be skipped"; }

# The NV-Embed-v2 tokenizer tests compare ids with the official environment (transformers 4.42 with
# tokenizers 0.19, as NV-Embed-v2's code pins), run for real in a side venv of its own: it converts
# Mistral's tokenizer.model as that environment writes it and gives the reference ids. No torch: ~40 s.
OFFICIAL_TOKENIZER_VENV := .venv-official-tokenizer
OFFICIAL_TOKENIZER_PINS := transformers==4.42.4 tokenizers==0.19.1 sentencepiece==0.2.0 protobuf==5.27.2

# Quick when built with these pins; rebuilt when they change.
official-tokenizer:
	@test "$$(cat $(OFFICIAL_TOKENIZER_VENV)/.installed 2>/dev/null)" = "$(OFFICIAL_TOKENIZER_PINS)" || { \
	  rm -rf $(OFFICIAL_TOKENIZER_VENV) && $(PYTHON) -m venv $(OFFICIAL_TOKENIZER_VENV) && \
	  $(OFFICIAL_TOKENIZER_VENV)/bin/python -m pip install -q --disable-pip-version-check $(OFFICIAL_TOKENIZER_PINS) && \
	  echo "$(OFFICIAL_TOKENIZER_PINS)" > $(OFFICIAL_TOKENIZER_VENV)/.installed; }

# The GPU acceptance script (bench/nvembed_device.py) runs on the device machine's image, which has
# no registry: Python 3.12, torch 2.11, transformers 5.17, pandas, scikit-learn, cupy; no Ray, no cuML,
# no openTSNE (.library's KINDS.md). openTSNE travels with each device call as a wheel in
# $(DEVICE_WHEELS)/ (cp312 for the device, and this Python's for the dry run here).
DEVICE_WHEELS := .device-wheels
DEVICE_CARRIED := openTSNE==1.0.4
WHEEL_PLATFORMS := --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64

device-wheels:
	@test "$$(cat $(DEVICE_WHEELS)/.pins 2>/dev/null)" = "$(DEVICE_CARRIED) $$($(PYTHON) -c 'import sys; print(sys.version_info[1])')" || { \
	  rm -rf $(DEVICE_WHEELS) && for v in 3.12 $$($(PYTHON) -c 'import sys; print("3.%d" % sys.version_info[1])'); do \
	    $(PYTHON) -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version $$v \
	      --implementation cp $(WHEEL_PLATFORMS) -d $(DEVICE_WHEELS) $(DEVICE_CARRIED) || exit 1; done && \
	  echo "$(DEVICE_CARRIED) $$($(PYTHON) -c 'import sys; print(sys.version_info[1])')" > $(DEVICE_WHEELS)/.pins; }

# The dry run in make test runs in .venv-device, built to the device image's package set: its
# versions where PyPI serves them, nothing it lacks (no Ray, cuML, openTSNE, mistral-common), and
# openTSNE only from $(DEVICE_WHEELS), so an import the device cannot satisfy fails here first.
# Gaps, each the closest served: Python 3.11 (3.12 is not this machine's python, and PyPI's torch
# for it is the multi-GB CUDA build), torch 2.13.0 CPU (2.11.0+cu130 there), numpy 2.4.6 (2.5.2
# there needs Python 3.12); packages whose version KINDS.md does not give are the newest served.
DEVICE_VENV := .venv-device
DEVICE_PINS := torch==2.13.0 transformers==5.17.0 tokenizers==0.23.2 huggingface_hub==1.33.0 safetensors==0.8.0 \
  accelerate==1.15.0 sentencepiece==0.2.2 numpy==2.4.6 pandas scikit-learn scipy pyarrow typer tqdm matplotlib \
  threadpoolctl psutil

device-env: device-wheels
	@test "$$(cat $(DEVICE_VENV)/.installed 2>/dev/null)" = "$(DEVICE_PINS) + $(DEVICE_CARRIED)" || { \
	  rm -rf $(DEVICE_VENV) && $(PYTHON) -m venv $(DEVICE_VENV) && \
	  $(DEVICE_VENV)/bin/python -m pip install -q --disable-pip-version-check --no-compile $(DEVICE_PINS) && \
	  $(DEVICE_VENV)/bin/python -m pip install -q --disable-pip-version-check --no-index --no-deps \
	    $(DEVICE_WHEELS)/*-cp3$$($(PYTHON) -c 'import sys; print(sys.version_info[1])')-*.whl && \
	  echo "$(DEVICE_PINS) + $(DEVICE_CARRIED)" > $(DEVICE_VENV)/.installed; }

# What one device call carries besides the wheels (docs/nvembed.md, "GPU acceptance"): MTSamples,
# NV-Embed-v2's tokenizer files as the official environment writes them, and the padded model
# before the packed forward (69809c2, the same revision as PADDED_REVISION in bench/nvembed_device.py).
device-files: setup official-tokenizer device-wheels
	mkdir -p .gpu
	install -m 644 ../shared/data/mtsamples.parquet .gpu/
	rm -rf .gpu/tokenizer && $(PY) -c "import sys; sys.path.insert(0, '.'); from bench.checkpoint import write_tokenizer; \
	  said = write_tokenizer('.gpu/tokenizer', 32000); print(said); sys.exit('4.42.4' not in said)"
	git show 69809c2~1:embednv/models/nvembed.py > .gpu/nvembed_padded.py
	du -sh .gpu $(DEVICE_WHEELS)

# EMBEDNV_REQUIRE_OFFICIAL_TOKENIZER: under make test a missing side venv fails those tests, not skips them.
# EMBEDNV_REQUIRE_DEVICE_ENV: likewise for .venv-device, where the GPU script's dry run runs.
# pytest-xdist workers, each taking whole test files (module fixtures such as a Ray head start once).
# On 2 cores the suite is CPU-bound: three workers took 9 min 14 s where two took 8 min 50 s.
TEST_WORKERS ?= 2

# The side environments and Chromium install side by side (downloads and unpacking overlap: about two
# minutes less on a fresh machine); each one's output is printed whole when it ends.
test: setup
	@$(MAKE) --no-print-directory -j3 --output-sync=target official-tokenizer device-env browser
	@$(MAKE) --no-print-directory lint
	EMBEDNV_REQUIRE_OFFICIAL_TOKENIZER=1 EMBEDNV_REQUIRE_DEVICE_ENV=1 $(PY) -m pytest -q --durations=25 \
	  -n $(TEST_WORKERS) --dist loadfile $(ARGS)

# The quick loop for a developer: every test that starts no Ray, runs no other process and drives no
# browser (marked by tests/conftest.py from what each test does); `make test` stays the whole suite.
test-fast: setup
	$(PY) -m pytest -q -m "not ray and not subprocess and not browser" -n $(TEST_WORKERS) --dist loadfile --durations=10 $(ARGS)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

data/sample_corpus.parquet: | setup
	$(VENV)/bin/embednv sample-corpus $@ --n $(SAMPLE_N) --seed 0

embed-corpus: setup $(if $(filter data/sample_corpus.parquet,$(INPUT)),data/sample_corpus.parquet)
	$(VENV)/bin/embednv embed $(INPUT) --out $(OUT) --model $(MODEL) $(ARGS)

map-corpus: setup
	@test -f $(OUT)/_SUCCESS || $(MAKE) embed-corpus
	$(VENV)/bin/embednv map $(OUT) --out $(MAP_OUT) --texts $(INPUT) $(ARGS)

bench: setup
	$(PY) bench/run_all.py $(ARGS)
	$(MAKE) bench-map
	$(MAKE) bench-index
	$(MAKE) bench-update
	$(MAKE) bench-map-update

# The map as users run it: the default `embednv map` at 10k, 50k, 100k points and map.html in
# headless Chromium at 10k and 100k (about 15 minutes); merged into docs/benchmarks.md.
bench-map: setup browser
	$(PY) bench/map_default.py --json docs/benchmarks-map-default.json
	$(PY) bench/bench_map_html.py --sizes 10000,100000 --repeats 3 --json docs/benchmarks-map-html.json
	$(PY) bench/run_all.py --render

# The cohort index (`embednv index`) at 1M x 384-d: build time and memory, size beside the vectors, query latency
# and recall@50 against the exact scan (about 6 minutes on 2 cores); merged into docs/benchmarks.md.
bench-index: setup
	$(PY) bench/cohort_index.py --json docs/benchmarks-index.json
	$(PY) bench/run_all.py --render

# `embed --update` with 1% new and 0.1% changed notes: notes embedded, time beside the full run, bytes
# rewritten. MiniLM on 100k sample notes, each cut to its first 48 words (about 35 minutes on 2 quiet
# cores; whole notes would take 2 h), MiniLM on 2,000 whole notes (3 minutes), and the probe encoder at 100k
# whole notes (the pipeline alone, 5 minutes); merged into docs/benchmarks.md.
bench-update: setup
	$(PY) bench/update.py --n 100000 --note-words 48 --json docs/benchmarks-update-100k.json
	$(PY) bench/update.py --n 2000 --json docs/benchmarks-update.json
	$(PY) bench/update.py --n 100000 --model probe --json docs/benchmarks-update-probe.json
	$(PY) bench/run_all.py --render

# embednv map --texts at 1M synthetic 384-d notes end to end, phase by phase (time, peak RSS), and the
# driver's memory for note text at 100k and 1M (bench/bench_map_1m.py). Not part of make bench: it
# holds a 2-core machine for long (the 1M map's t-SNE above all). Then merged into docs/benchmarks.md.
bench-map-1m: setup
	$(PY) bench/bench_map_1m.py --json docs/benchmarks-map-1m.json
	$(PY) bench/run_all.py --render

# Placement on a fitted map: `map --update` of 1,100 MTSamples notes vs a full refit, and a map fitted
# on a sample then placed vs a full fit: 100k sample-corpus notes, 100k synthetic vectors, MTSamples at
# 3 seeds (about 15 minutes on 2 cores, plus ~35 the first time to embed MTSamples and the 100k notes
# with MiniLM, kept in .bench/map-update); merged into docs/benchmarks.md.
bench-map-update: setup
	$(PY) bench/map_update.py --workdir .bench/map-update --json docs/benchmarks-map-update.json
	$(PY) bench/run_all.py --render

# The 1M-note scale run (about 14 minutes on 2 cores, with 100k beside it for the per-process
# flatness check) does not fit make bench's 20: measure it apart, then rewrite
# docs/benchmarks.{json,md} with it included and labelled.
bench-1m: setup
	$(PY) bench/scale.py --sizes 100000,1000000 --json docs/benchmarks-scale-1m.json
	$(PY) bench/run_all.py --render

# Operating figures measured apart (about 30 minutes on 2 quiet cores, 60 here under load): rows lost to a SIGKILL at
# 25/50/75% of a 3,000-note run, and how many rows/s one driver moves with a free 4096-d model.
bench-ops: setup
	$(PY) bench/crash.py --json docs/benchmarks-crash.json
	$(PY) bench/fanout.py --json docs/benchmarks-fanout.json
	$(PY) bench/run_all.py --render

# Not part of make test: a full-size random NV-Embed-v2 checkpoint (15.7 GB on disk, ~18 GiB of
# memory) through the real `embednv embed` on CPU; checks peak actor memory <= 1.10x the weights.
# About 10 minutes on 2 cores; the checkpoint is deleted afterwards. Then `bench/run_all.py --render`.
check-fullsize: setup
	$(PY) bench/fullsize.py --json docs/benchmarks-fullsize.json

clean:
	rm -rf out data .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(OFFICIAL_TOKENIZER_VENV) $(DEVICE_VENV) $(DEVICE_WHEELS) .gpu
