import pytest

from distill.config import ConfigError, build_config, load_config

BASE = {"teacher": {"model": "t"}, "student": {"model": "s"}}


def test_demo_config_validates():
    cfg = load_config("configs/demo.yaml")
    assert cfg.name == "demo" and cfg.training.backend == "deepspeed"


def test_overrides_are_typed():
    cfg = build_config(BASE, ["training.max_steps=7", "mining.sources=[bm25]", "training.losses.kl=0.5",
                              "index.factory=HNSW32", "data.max_test_queries=null"])
    assert cfg.training.max_steps == 7
    assert cfg.mining.sources == ["bm25"]
    assert cfg.training.losses.kl == 0.5
    assert cfg.index.factory == "HNSW32"


@pytest.mark.parametrize("override, needle", [
    ("training.lerning_rate=1", "training.lerning_rate"),
    ("bogus=1", "bogus"),
    ("training.max_steps=abc", "training.max_steps"),
    ("training.backend=horovod", "training.backend"),
    ("mining.sources=[bm25, magic]", "mining.sources"),
    ("training.losses.kl=-1", "training.losses.kl"),
])
def test_bad_keys_and_values_name_the_key(override, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        build_config(BASE, [override])


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="key=value"):
        build_config(BASE, ["training.max_steps"])
    with pytest.raises(ConfigError, match="not a section"):
        build_config(BASE, ["teacher.model.x=1"])


def test_missing_required_section():
    with pytest.raises(ConfigError, match="teacher"):
        build_config({"student": {"model": "s"}})


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_digest_changes_with_content():
    a, b = build_config(BASE), build_config(BASE, ["training.max_steps=3"])
    assert a.digest("data") == b.digest("data")
    assert a.digest("training") != b.digest("training")
