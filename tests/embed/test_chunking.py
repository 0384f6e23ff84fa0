import numpy as np
import pytest

from embednv.embed.chunking import combine_chunks, split_into_windows


def test_short_note_is_one_window_unchanged():
    assert split_into_windows([1, 7, 8, 2], max_tokens=8, n_head=1, n_tail=1, overlap=2) == [[1, 7, 8, 2]]


def test_long_note_windows_repeat_head_and_tail_and_overlap():
    body = list(range(100, 120))  # 20 body tokens
    ids = [1, 50] + body + [2]  # head: BOS + one instruction token; tail: EOS
    windows = split_into_windows(ids, max_tokens=10, n_head=2, n_tail=1, overlap=2)
    room, stride = 7, 5
    for window in windows:
        assert len(window) <= 10
        assert window[:2] == [1, 50] and window[-1] == 2
    bodies = [w[2:-1] for w in windows]
    assert bodies[0] == body[:room]
    assert bodies[1][:2] == bodies[0][-2:]  # the overlap
    covered = sorted({t for b in bodies for t in b})
    assert covered == body  # nothing dropped
    assert len(windows) == 1 + -(-(len(body) - room) // stride)


def test_window_too_small_for_overlap_is_an_error():
    with pytest.raises(ValueError, match="must exceed the overlap"):
        split_into_windows(list(range(50)), max_tokens=6, n_head=2, n_tail=2, overlap=4)


def test_combine_is_token_weighted_and_unit_norm():
    a, b = np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    combined = combine_chunks(np.stack([a, b]), [300, 100])
    assert np.isclose(np.linalg.norm(combined), 1.0)
    expected = np.array([0.75, 0.25]) / np.linalg.norm([0.75, 0.25])
    assert np.allclose(combined, expected, atol=1e-6)
