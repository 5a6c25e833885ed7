"""distill.worker_models: a model is built once per process per key; the key follows the model's files."""

from __future__ import annotations

import os

import pytest

from distill import worker_models


class Model:
    def __init__(self, model_dir: str, scale: int = 1):
        self.model_dir, self.scale = model_dir, scale

    def __call__(self, batch):
        return {"x": [v * self.scale for v in batch["x"]]}


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch):
    monkeypatch.setattr(worker_models, "_MODELS", worker_models.OrderedDict())
    monkeypatch.setattr(worker_models, "BUILDS", {})


def _dir(tmp_path, content: bytes = b"v1"):
    d = tmp_path / "m"
    d.mkdir(exist_ok=True)
    (d / "weights.bin").write_bytes(content)
    (d / "sub").mkdir(exist_ok=True)
    (d / "sub" / "config.json").write_text("{}")
    return d


def test_the_key_is_stable_and_changes_with_the_class_the_arguments_and_every_file(tmp_path):
    d = _dir(tmp_path)
    kw = {"model_dir": str(d), "scale": 2}
    key = worker_models.model_key(Model, kw)
    assert worker_models.model_key(Model, dict(kw)) == key
    assert worker_models.model_key(Model, {**kw, "scale": 3}) != key
    assert worker_models.model_key(dict, kw) != key
    (d / "sub" / "config.json").write_text('{"layers": 2}')  # a nested file rewritten
    assert worker_models.model_key(Model, kw) != key
    key2 = worker_models.model_key(Model, kw)
    st = (d / "weights.bin").stat()
    os.utime(d / "weights.bin", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # touched, same size
    assert worker_models.model_key(Model, kw) != key2
    # paths nested in lists and dicts count too (an ensemble's members)
    nested = {"members": [{"path": str(d)}]}
    k3 = worker_models.model_key(Model, nested)
    (d / "weights.bin").write_bytes(b"v2!")
    assert worker_models.model_key(Model, nested) != k3
    # strings that are no path are plain arguments
    assert worker_models.model_key(Model, {"model_dir": "no/such/dir"}) == worker_models.model_key(
        Model, {"model_dir": "no/such/dir"})


def test_a_model_is_built_once_per_key_and_the_last_two_are_kept(tmp_path):
    d = _dir(tmp_path)
    kws = [{"model_dir": str(d), "scale": s} for s in (1, 2, 3)]
    keys = [worker_models.model_key(Model, kw) for kw in kws]
    a = worker_models.cached(Model, kws[0], keys[0])
    assert worker_models.cached(Model, kws[0], keys[0]) is a
    assert worker_models.apply({"x": [1, 2]}, Model, kws[1], keys[1]) == {"x": [2, 4]}
    assert worker_models.cached(Model, kws[0], keys[0]) is a  # a used last: b is now the oldest
    worker_models.cached(Model, kws[2], keys[2])  # a third model: b (least recently used) goes
    assert list(worker_models._MODELS) == [keys[0], keys[2]]
    assert worker_models.cached(Model, kws[0], keys[0]) is a
    worker_models.cached(Model, kws[1], keys[1])  # b is built again
    assert worker_models.BUILDS == {keys[0]: 1, keys[1]: 2, keys[2]: 1}


def test_the_task_function_carries_the_model_class_name_and_uses_the_cache(tmp_path):
    d = _dir(tmp_path)
    kw = {"model_dir": str(d), "scale": 5}
    key = worker_models.model_key(Model, kw)
    fn = worker_models.task_fn(Model)
    assert fn.__name__ == "Model"
    assert fn({"x": [1]}, cls=Model, kwargs=kw, key=key) == {"x": [5]}
    assert fn({"x": [2]}, cls=Model, kwargs=kw, key=key) == {"x": [10]}
    assert worker_models.BUILDS == {key: 1}
