"""bench/fanout.py end to end, and the operating sections (fan-out, crash) it and bench/crash.py render into."""

import json

import pytest


@pytest.mark.timeout(600)
def test_fanout_small_run_and_both_operating_sections_render(tmp_path, bench_script):
    """bench/fanout.py end to end on 3,000 notes (4096-d vectors through the real CLI), and the
    sections the report renders from fanout's and crash's documents."""
    from bench.report_separate import crash_section, fanout_section

    bench_script("fanout.py", "--notes", "3000", "--json", str(tmp_path / "fanout.json"))
    doc = json.loads((tmp_path / "fanout.json").read_text())
    assert "embedded 3,000 of 3,000 notes" in doc["result"]["summary"] and doc["result"]["dim"] == 4096
    assert doc["result"]["rows_per_s_total"] > 0
    assert "| goal ≥ 5,000 rows/s |" in fanout_section(doc)
    # A run that ends within one progress interval (3,000 notes often do) has no steady rate: said, not a crash.
    short = {**doc, "result": {**doc["result"], "rows_per_s_steady": None, "mb_per_s_steady": None}}
    assert "| – | – | " in fanout_section(short) and "| not measured (run too short" in fanout_section(short)

    runs = [
        {
            "sharding": "--rows-per-shard 200",
            "kill_at": 0.5,
            "killed": True,
            "seconds_to_kill": 9.0,
            "rows_embedded_at_kill": 1400,
            "shards_on_disk_at_kill": 6,
            "rows_recomputed": 1800,
            "rows_lost": 200,
            "resume_complete": True,
        }
    ]
    text = crash_section(
        {
            "command": "python bench/crash.py",
            "notes": 3000,
            "window_rows": 1024,
            "actors": 1,
            "runs": runs,
            "git_commit": "abc",
            "generated_at": "today",
            "seconds": 600,
        }
    )
    assert "| --rows-per-shard 200 | 50% | 1,400 | 6 | 1,800 | 200 | yes |" in text
    assert "every id exactly once" in text
