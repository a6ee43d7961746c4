"""Two click-training stores read as one (``train-clicks train --store A B``)."""

import numpy as np
import pytest

from napari_medsam.training.clicks.store import SliceStore, StoreUnion, open_stores


def _store(folder, n, value):
    store = SliceStore(folder, capacity=n + 1, embedding_shape=(2, 4, 4), side=8)
    arrays = {
        "emb": np.full((n, 2, 4, 4), value, np.float16),
        "lab": np.full((n, 8, 8), value, np.int16),
        "nbr": np.zeros((n, 6, 8, 8), np.int16),
        "spx": np.arange(n, dtype=np.int16)[:, None, None] * np.ones((1, 8, 8), np.int16),
    }
    store.append([{"split": "train", "volume": f"v{value}", "i": i} for i in range(n)], arrays)
    return store


def test_union_numbers_records_store_by_store(tmp_path):
    _store(tmp_path / "a", 3, 1)
    _store(tmp_path / "b", 2, 7)
    union = open_stores([tmp_path / "a", tmp_path / "b"])
    assert isinstance(union, StoreUnion)
    assert union.count == 5 and union.capacity == 4 + 3
    assert [m["volume"] for m in union.meta] == ["v1"] * 3 + ["v7"] * 2
    assert float(union.embedding(2)[0, 0, 0]) == 1 and float(union.embedding(3)[0, 0, 0]) == 7
    assert int(union.arrays["spx"][4][0, 0]) == 1  # second record of the second store
    assert int(union.arrays["lab"][0][0, 0]) == 1
    with pytest.raises(IndexError):
        union.embedding(5)


def test_union_sees_records_appended_later_and_one_folder_stays_a_store(tmp_path):
    a = _store(tmp_path / "a", 2, 1)
    _store(tmp_path / "b", 1, 3)
    union = open_stores([tmp_path / "a", tmp_path / "b"])
    a.append([{"split": "train", "volume": "v1", "i": 2}], {
        "emb": np.full((1, 2, 4, 4), 5, np.float16), "lab": np.zeros((1, 8, 8), np.int16),
        "nbr": np.zeros((1, 6, 8, 8), np.int16), "spx": np.zeros((1, 8, 8), np.int16)})
    assert union.refresh() == 4
    assert float(union.embedding(2)[0, 0, 0]) == 5 and float(union.embedding(3)[0, 0, 0]) == 3
    assert isinstance(open_stores([tmp_path / "a"]), SliceStore)


def test_union_refuses_stores_of_other_shapes(tmp_path):
    _store(tmp_path / "a", 1, 1)
    SliceStore(tmp_path / "c", capacity=2, embedding_shape=(2, 8, 8), side=8)
    with pytest.raises(ValueError, match="differ"):
        open_stores([tmp_path / "a", tmp_path / "c"])
