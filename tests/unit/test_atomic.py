"""distill.atomic: every write is whole or absent; a failed one names its destination and leaves nothing."""

from __future__ import annotations

import json

import pytest

from distill.atomic import RunDirError, atomic_dir, write_atomic, write_json_atomic, write_text_atomic


def test_text_and_json_replace_the_old_file_in_one_step(tmp_path):
    p = tmp_path / "report.md"
    p.write_text("old")
    write_text_atomic(p, "new ü")
    assert p.read_text(encoding="utf-8") == "new ü"
    write_json_atomic(tmp_path / "m.json", {"b": 1, "a": [1, 2]})
    assert (tmp_path / "m.json").read_text() == json.dumps({"a": [1, 2], "b": 1}, indent=2)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.json", "report.md"]  # no temporary left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "shard.parquet"
    p.write_text("old")

    def boom(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(RunDirError, match="cannot write .*shard.parquet: No space left on device"):
        write_atomic(p, boom)
    assert p.read_text() == "old" and [x.name for x in tmp_path.iterdir()] == ["shard.parquet"]


def test_a_directory_is_swapped_in_whole_and_stale_temporaries_are_cleared(tmp_path):
    final = tmp_path / "eval"
    (tmp_path / ".eval.tmp-1").mkdir()  # left by a killed run
    with atomic_dir(final) as tmp:
        (tmp / "a").write_text("1")
    with atomic_dir(final) as tmp:
        (tmp / "b").write_text("2")
    assert [x.name for x in final.iterdir()] == ["b"] and [x.name for x in tmp_path.iterdir()] == ["eval"]
    with pytest.raises(KeyError), atomic_dir(final) as tmp:
        (tmp / "c").write_text("3")
        raise KeyError("stage failed")
    assert [x.name for x in final.iterdir()] == ["b"] and [x.name for x in tmp_path.iterdir()] == ["eval"]
