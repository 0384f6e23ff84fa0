import numpy as np
import pyarrow as pa

from embednv.mapping.known_labels import UNKNOWN, KnownLabels
from embednv.mapping.metrics import label_agreement, label_composition


def test_labels_from_batches_share_one_code_per_name_and_nulls_stay_unknown():
    known = KnownLabels(6)
    known.put(np.array([4, 0, 2]), pa.array(["cardio", None, "neuro"]))
    known.put(np.array([1, 5]), pa.array(["neuro", "cardio"], pa.large_string()))
    assert known.values() == [None, "neuro", "neuro", None, "cardio", "cardio"]
    assert known.codes.dtype == np.int32 and known.codes[3] == UNKNOWN
    assert len(known.names) == 2  # one entry per distinct label, however many rows carry it


def test_non_string_labels_are_named_as_python_prints_them():
    known = KnownLabels(3)
    known.put(np.arange(3), pa.array([3, None, 3]))
    assert known.values() == ["3", None, "3"]
    floats = KnownLabels.from_values([1.5, None])
    assert floats.values() == ["1.5", None]


def test_scores_and_composition_read_the_codes():
    known = KnownLabels.from_values(["b", "a", "a", None, "c", "b"])
    clusters = np.array([0, 0, 0, 1, 1, 1], dtype=np.int32)
    # Ties are broken by name, as the cluster panel lists them.
    assert label_composition(known, clusters, 2) == [[("a", 2), ("b", 1)], [("b", 1), ("c", 1)]]
    assert label_agreement(KnownLabels.from_values([None, "x"]), np.array([0, 1])) == {"n_labelled": 1}
