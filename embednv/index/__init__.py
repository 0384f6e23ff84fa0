"""Nearest-neighbour indexes for cohort queries: FAISS, stored beside the shards in `_index/`.

`build.build_index` makes one (`embednv index EMB`), `search.open_search` answers from it (or
refuses a stale one), `store` says where it lives and what it was built from, `params` how each
"auto" is chosen. Nothing here is imported by `embednv --help`; FAISS loads inside the functions.
"""
