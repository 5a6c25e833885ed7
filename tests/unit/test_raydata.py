"""distill.raydata without a cluster: blocks, rows in = rows out, shard assembly and shard resume."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from distill.config import build_config
from distill.manifest import RunDir
from distill.raydata import ShardAssembler, ShardResume, blocks_of, check_rows


def test_blocks_cover_the_table_in_order_with_at_least_n_blocks_of_bounded_size():
    t = pa.table({"x": list(range(1000))})
    blocks = blocks_of(t, 3, max_rows=256)
    assert len(blocks) >= 4 and max(b.num_rows for b in blocks) <= 256
    assert pa.concat_tables(blocks).column("x").to_pylist() == list(range(1000))
    assert [b.num_rows for b in blocks_of(pa.table({"x": [1, 2, 3]}), 8)] == [1, 1, 1]
    assert blocks_of(pa.table({"x": pa.array([], pa.int64())}), 4)[0].num_rows == 0  # one empty block


def test_check_rows_names_missing_and_duplicated_rows():
    check_rows("encode", ["a", "b"], ["b", "a"])
    with pytest.raises(RuntimeError, match=r"score: 3 rows in but 3 out \(1 missing, 1 duplicated\)"):
        check_rows("score", ["a", "b", "c"], ["a", "b", "b"])
    with pytest.raises(RuntimeError, match=r"2 rows in but 1 out \(1 missing"):
        check_rows("encode", ["a", "b"], ["a"])


def test_a_shard_is_handed_on_once_every_row_is_back_whatever_the_order():
    asm = ShardAssembler({0: ["a", "b", "c"], 1: ["d"], 2: ["e", "f"]})
    take = lambda batch, pos: [batch[i] for i in pos]  # noqa: E731
    assert asm.add(["c", "e"], ["C", "E"], take) == []
    assert asm.add(["d", "a"], ["D", "A"], take) == [(1, [["D"]])]
    done = asm.add(["f", "b"], ["F", "B"], take)
    assert done == [(0, [["C"], ["A"], ["B"]]), (2, [["E"], ["F"]])]  # by shard, parts in arrival order
    assert asm.check("encode") == 6


def test_unknown_and_duplicate_rows_are_not_handed_on_but_reported():
    asm = ShardAssembler({0: ["a", "b"]})
    take = lambda batch, pos: [batch[i] for i in pos]  # noqa: E731
    assert asm.add(["a", "a", "x"], [1, 2, 3], take) == []  # the duplicate "a" does not complete the shard
    assert asm.add(["b"], [4], take) == [(0, [[1], [4]])]
    with pytest.raises(RuntimeError, match="1 duplicated"):
        asm.check("score")
    with pytest.raises(ValueError, match="unique"):
        ShardAssembler({0: ["a"], 1: ["a"]})


def _rd(tmp_path, *overrides):
    return RunDir(build_config({"teacher": {"model": "t"}, "student": {"model": "s"}},
                               [f"runs_dir={tmp_path}", *overrides]))


def _write_ids(ids):
    return lambda tmp: tmp.write_text(json.dumps(ids))


def test_shard_resume_keeps_saved_shards_of_the_same_fingerprint_only(tmp_path, capsys):
    shards = [["a", "b"], ["c", "d"], ["e"]]
    read = lambda p: json.loads(p.read_text())  # noqa: E731
    first = ShardResume(_rd(tmp_path), "encode", shards, read, "model-1", verb="encoding")
    assert first.todo == [0, 1, 2] and first.done == set()
    first.save(0, _write_ids(shards[0]))
    first.save(2, _write_ids(["e", "zzz"]))  # holds other rows: redone
    again = ShardResume(_rd(tmp_path), "encode", shards, read, "model-1", verb="encoding")
    assert again.done == {0} and again.todo == [1, 2]
    assert "[encode] resuming: 1 of 3 shards already saved, encoding 2" in capsys.readouterr().out
    assert again.path(0).parent.name == ".embeddings.partial"
    other_model = ShardResume(_rd(tmp_path), "encode", shards, read, "model-2")
    assert other_model.done == set()  # another model: the folder is dropped whole
    other_model.drop()
    assert not other_model.path(0).parent.exists()


def test_rows_not_in_keeps_the_rows_not_yet_back_in_their_blocks():
    import pyarrow as pa

    from distill.raydata import _rows_not_in

    blocks = [pa.table({"qid": ["a", "a", "b"], "docid": ["1", "2", "1"], "x": [0, 1, 2]}),
              pa.table({"qid": ["c"], "docid": ["9"], "x": [3]})]
    left = _rows_not_in(blocks, ("qid", "docid"), {("a", "2"), ("c", "9")})
    assert [b.to_pydict() for b in left] == [{"qid": ["a", "b"], "docid": ["1", "1"], "x": [0, 2]}]
    assert _rows_not_in(blocks, ("qid", "docid"), set())[0] is blocks[0]  # untouched blocks are reused
    assert _rows_not_in(blocks, ("qid",), {("a",), ("b",), ("c",)}) == []


def test_pool_kind_is_tasks_on_cpus_and_actors_with_gpus_and_tasks_with_gpus_is_refused():
    from distill.config import ConfigError, RayConfig
    from distill.raydata import pool_kind

    assert pool_kind(RayConfig()) == "tasks"
    assert pool_kind(RayConfig(actor_gpus=1)) == "actors"
    assert pool_kind(RayConfig(stage_pool="actors")) == "actors"
    with pytest.raises((ValueError, ConfigError), match="stage_pool: tasks needs ray.actor_gpus: 0"):
        RayConfig(stage_pool="tasks", actor_gpus=1)
