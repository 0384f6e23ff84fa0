"""bench/update.py: the export it grows a corpus into, and the section it renders."""

import pyarrow.parquet as pq


def test_the_grown_export_has_every_note_one_percent_new_and_every_thousandth_changed(tmp_path):
    from bench.update import grown_export, sample_notes

    base, whole, export = tmp_path / "notes.parquet", tmp_path / "whole.parquet", tmp_path / "export.parquet"
    sample_notes(base, 2000, 0, words=12)
    sample_notes(whole, 2000, 0, words=None)
    assert grown_export(base, 2000, export, words=12) == (20, 2)
    notes, grown, full = (pq.read_table(p) for p in (base, export, whole))
    assert grown.column("note_id").to_pylist() == notes.column("note_id").to_pylist() + list(range(2001, 2021))
    before, after = notes.column("text").to_pylist(), grown.column("text").to_pylist()
    assert [i for i in range(2000) if before[i] != after[i]] == [0, 1000]  # an addendum on every 1,000th
    assert before == [" ".join(text.split()[:12]) for text in full.column("text").to_pylist()]
    assert all(len(text.split()) <= 12 for text in after[2000:]) and len(set(after[2000:])) > 1  # new notes cut too


def test_the_update_section_judges_the_count_and_the_share():
    from bench.report_update import update_section

    record = {"bytes_rewritten": 3_000_000, "shards_rewritten": 2, "bytes_written": 40_000, "new_shards": 1}
    doc = {
        "command": "python bench/update.py --n 1000",
        "git_commit": "abc1234",
        "generated_at": "2026-12-03T11:00:00+00:00",
        "machine": {"load_average_1m_at_start": 2.0, "load_average_1m_at_end": 2.5, "logical_cores": 2},
        "n": 1000,
        "new": 10,
        "changed": 1,
        "expected_to_embed": 11,
        "embedded": 11,
        "record": record,
        "full_seconds": 100.0,
        "update_seconds": 6.0,
        "planning_seconds": 0.5,
        "model_load_seconds": 3.0,
        "startup_seconds": 3.5,
        "share_of_full": 0.06,
        "share_beyond_startup": 0.025,
        "goal_share": 0.03,
        "directory_bytes": 3_100_000,
    }
    text = update_section({"status": "ok", "result": doc})
    assert "11 of 11 expected: exact" in text and "≤ 3%): met" in text and "3.0 MB rewritten in 2 shards" in text
    wrong = update_section({"status": "ok", "result": doc | {"embedded": 12, "share_beyond_startup": 0.05}})
    assert "**WRONG**" in wrong and "**MISSED**" in wrong
    assert "run `make bench-update`" in update_section({"status": "pending", "error": "not measured yet"})
    probe = doc | {"model": "probe", "n": 100_000, "command": "python bench/update.py --n 100000 --model probe"}
    probe |= {"embedded": 1100, "expected_to_embed": 1100}
    both = update_section({"status": "ok", "result": doc}, {"status": "ok", "result": probe})
    assert both.startswith(text) and "### At 100k notes, the pipeline alone (probe encoder)" in both
    assert "a 100,000-note sample corpus embedded once with the probe encoder" in both
    assert "the issue's 100k whole notes would take" in text and both.count("100k whole notes would take") == 1
    # The probe's full run has no model time: its share is not the goal's; MiniLM's rate (10 notes/s) gives the estimate.
    assert both.count("Goal (share beyond") == 1 and "Goal: not judged on this run" in both
    assert "a full run of 100,000 notes about 2.8 h, this update about 112 s, 1.11% of it" in both  # 2.5 s + 1,100 / 10
    # The run, where measured, comes first: MiniLM at 100k notes cut to their first words.
    short = doc | {
        "n": 100_000,
        "note_words": 48,
        "full_tokens": 6_700_000,
        "embedded": 1100,
        "expected_to_embed": 1100,
    }
    three = update_section(
        {"status": "ok", "result": doc}, {"status": "ok", "result": probe}, {"status": "ok", "result": short}
    )
    first, rest = three.split("### Whole notes, MiniLM")
    assert (
        "### 100k notes, MiniLM" in first
        and "a 100,000-note sample corpus, each note cut to its first 48 words (67" in first
    )
    assert (
        "1,100 of 1,100 expected: exact" in first
        and "≤ 3%): met" in first
        and "100k whole notes would take" not in first
    )
    assert "### At 100k notes, the pipeline alone" in rest
