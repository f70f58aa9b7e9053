"""Pipeline results -> typed Arrow arrays (no model)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from bertrt.batch import results
from bertrt.tasks.fill_mask import prediction_type
from bertrt.tasks.token_classification.task import entity_type


def _spec(kind, type_):
    return results.ResultSpec(kind, type_)


def test_ner_lists_of_structs_with_float32_scores():
    spec = _spec("list", pa.list_(entity_type(aggregated=True)))
    values = [[{"entity_group": "PER", "score": 0.123456789, "word": "maria", "start": 0, "end": 5}], []]
    array = results.to_arrow(spec, values)
    assert array.type == spec.type
    got = array.to_pylist()
    assert got[1] == [] and got[0][0]["word"] == "maria"
    assert got[0][0]["score"] == float(np.float32(0.123456789))


def test_pooled_tokens_and_words_vectors():
    pooled = results.to_arrow(results.pooled_spec(3), [np.arange(3.0), np.ones(3)])
    assert pooled.type == pa.list_(pa.float32(), 3) and pooled.to_pylist()[0] == [0.0, 1.0, 2.0]
    assert len(results.to_arrow(results.pooled_spec(3), [])) == 0
    tokens = results.to_arrow(
        results.tokens_spec(2), [np.zeros((1, 3, 2)), np.ones((1, 1, 2), dtype=np.float32)]
    )
    assert [len(v) for v in tokens.to_pylist()] == [3, 1] and tokens.to_pylist()[1] == [[1.0, 1.0]]
    words = results.to_arrow(
        results.words_spec(2),
        [{"words": ["a", "b"], "offsets": [(0, 1), (2, 3)], "vectors": np.eye(2)}],
    )
    assert words.to_pylist() == [
        {"words": ["a", "b"], "offsets": [[0, 1], [2, 3]], "vectors": [[1, 0], [0, 1]]}
    ]


def test_fill_mask_is_one_list_per_mask_and_unknown_tasks_json():
    entry = {"score": 0.5, "token": 7, "token_str": "x", "sequence": "a x"}
    fill = results.to_arrow(
        _spec("nested", pa.list_(pa.list_(prediction_type()))), [[entry], [[entry], [entry]]]
    )
    assert [len(v) for v in fill.to_pylist()] == [1, 2]
    other = results.to_arrow(results.json_spec(), [{"a": np.float32(1.5)}])
    assert other.to_pylist() == ['{"a": 1.5}']
