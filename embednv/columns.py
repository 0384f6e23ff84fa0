"""Column names: the output shards' public ones, and the private ones rows carry between stages.

Private names start with two underscores so they can never clash with a user's id column;
they never reach an output file.
"""

# Output shards (part-*.parquet), besides the id column, which keeps the input's own name.
EMBEDDING, N_TOKENS, N_CHUNKS = "embedding", "n_tokens", "n_chunks"
# SHA-256 (hex) of the exact note text the model saw, after decoding: `embed --update` re-embeds a
# note only when this changes. Hex text, so DuckDB, Polars and pandas compare it as a plain string.
TEXT_HASH = "text_sha256"
OUTPUT_VALUE_COLUMNS = (EMBEDDING, N_TOKENS, N_CHUNKS, TEXT_HASH)

# _errors/errors.parquet, besides the id column: where the row was and why it was not embedded.
ERROR_FILE, ERROR_ROW, ERROR_REASON = "file", "row", "reason"

# cohort's nearest-note lists (--near, --query), besides the id column.
COSINE, RANK = "cosine", "rank"
SCORE_COLUMNS = (COSINE, RANK)

# The inputs' id and text columns unless --id-column / --text-column name others; outputs keep the id's own name.
DEFAULT_ID_COLUMN, DEFAULT_TEXT_COLUMN = "note_id", "text"

# map.parquet, besides the id column: a note's place on the map, its cluster and (two-level maps) its group.
X, Y, CLUSTER, GROUP = "x", "y", "cluster", "group"
MAP_VALUE_COLUMNS = (X, Y, CLUSTER, GROUP)

# clusters.parquet: one row per cluster of each level (LEVEL is CLUSTER or GROUP, finest first in LEVELS),
# numbered by CLUSTER within its level; PARENT is a cluster's group.
LEVEL, PARENT, SIZE, FRACTION, NAME = "level", "parent", "size", "fraction", "name"
MAP_X, MAP_Y, EXEMPLAR_IDS, TOP_TERMS, TOP_LABELS = "map_x", "map_y", "exemplar_ids", "top_terms", "top_labels"
LEVELS = (CLUSTER, GROUP)

# The map's _points.parquet (what `map --update` keeps), besides the id column: each note's PCA
# coordinates and the embeddings' TEXT_HASH of it (named "text_hash" in maps since they had one).
POINT_PCA, POINT_TEXT_HASH = "pca", "text_hash"

# Between stages: set by the reader.
TEXT, ERROR, SHARD, ROW = "__text", "__error", "__shard", "__row"
HASH = "__text_sha256"  # the reader's hash of TEXT; it outlives the text and becomes TEXT_HASH
# Set by the tokenizer (the text is dropped there); the instruction travels with each batch to the model.
WINDOWS, NOTE_TOKENS, INSTRUCTION = "__windows", "__n_tokens", "__instruction"
# Set by the embed worker, for padding efficiency.
PADDED, WINDOW_TOKENS = "__padded_tokens", "__window_tokens"
