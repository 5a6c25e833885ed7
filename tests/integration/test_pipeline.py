"""The whole pipeline on a local Ray cluster: tiny random models, generated data with a learnable signal.

One run (DeepSpeed ZeRO-2 on 2 CPU workers) is killed mid-training on purpose, re-run, and must resume
from its last checkpoint; the distilled student must then beat its starting point.
"""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray

from distill.config import build_config
from distill.manifest import STAGES
from distill.pipeline import run_pipeline
from distill.sweep import run_with_sweep
from builders import make_beir, make_bow_encoder, make_tiny_bert, start_local_ray

pytestmark = pytest.mark.ray


# No idle workers started ahead of use: every task and actor here gets a worker of its own as it starts, so
# prestarted ones (a Python process each, Ray imported) would only take CPU from the run on a 2-core machine.
NO_PRESTART = {"prestart_worker_first_driver": False, "enable_worker_prestart": False}


@pytest.fixture(scope="module")
def ray_session():
    if not ray.is_initialized():
        start_local_ray(_system_config=NO_PRESTART)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    info = make_beir(root / "data", topics=12, docs_per_topic=10, train_queries=60, test_queries=30)
    (root / "vocab.json").write_text(json.dumps(info["vocab"]))
    make_tiny_bert(root / "student", info["vocab"], hidden=32, layers=2)
    make_bow_encoder(root / "teacher", info["vocab"])
    make_tiny_bert(root / "ce", info["vocab"], hidden=32, layers=1, cross_encoder=True)
    return root


def _config(root, **over):
    tree = {
        "name": "tiny", "runs_dir": str(root / "runs"),
        "data": {"dir": str(root / "data")},
        "teacher": {"kind": "dual-encoder", "model": str(root / "teacher"), "finetune": False, "max_length": 32},
        "student": {"model": str(root / "student"), "max_length": 32},
        "mining": {"sources": ["bm25", "student"], "depth": 10},
        "scoring": {"actors": 2, "batch_size": 64},
        "training": {"backend": "deepspeed", "zero_stage": 2, "num_workers": 2, "cpus_per_worker": 0.5,
                     "max_steps": 30, "queries_per_batch": 8, "group_size": 6, "learning_rate": 3e-3,
                     "teacher_temperature": 0.05, "student_temperature": 0.05, "checkpoint_every": 10,
                     "max_failures": 0, "losses": {"kl": 1.0, "infonce": 0.2}},
        "encoding": {"actors": 2, "batch_size": 64},
        "evaluation": {"rerank_depth": 20, "first_stage_depth": 100, "speed_sample": 16},
        "ray": {"num_cpus": 2},
    }
    for k, v in over.items():
        tree[k] = {**tree.get(k, {}), **v} if isinstance(v, dict) else v
    return build_config(tree)


DEV = {"dev_queries": 10}  # the main run holds 10 of its 60 training queries out as split `dev`


def _ensemble(root) -> dict:
    """The main run's teacher: the bag-of-words dual encoder and BM25, z-scored, weights fitted on dev."""
    return {"kind": "ensemble", "fit_weights": True, "weight_grid_step": 0.25, "members": [
        {"name": "bow", "kind": "dual-encoder", "model": str(root / "teacher"), "max_length": 32},
        {"name": "bm25", "kind": "bm25"}]}


def _main(root, **over):
    """The main run's config (the pipeline, sweep, export and ensemble tests share its outputs)."""
    return _config(root, data=DEV, teacher=_ensemble(root), **over)


@pytest.mark.timeout(900)
def test_pipeline_resumes_after_kill_and_distils(ray_session, assets, monkeypatch, capsys):
    cfg = _main(assets)
    # 1) training dies hard on rank 0 right after step 20 (its checkpoint is written): the stage fails
    monkeypatch.setenv("DISTILL_FAIL_AT_STEP", "20")
    monkeypatch.setenv("DISTILL_FAIL_ONCE_FILE", str(assets / "fault.once"))
    with pytest.raises(Exception):
        run_pipeline(cfg)
    manifest = json.loads((cfg.run_dir / "manifest.json").read_text())
    assert set(manifest["stages"]) == {"teacher", "mine", "score"}
    assert not (cfg.run_dir / "student").exists()  # no half-written stage output
    # 2) re-run: finished stages are skipped, training resumes from step 20 and finishes at 30
    monkeypatch.delenv("DISTILL_FAIL_AT_STEP")
    rd = run_pipeline(cfg)
    out = capsys.readouterr().out
    for stage in ("teacher", "mine", "score"):
        assert f"[{stage}] already finished, skipped" in out
    st = rd.manifest["stages"]
    assert st["train"]["resumed_from_step"] == 20
    assert st["train"]["counts"]["steps"] == 30
    # a loss curve in TensorBoard event files (training.log_every 5: steps 5..30, both attempts)
    from distill.tracking import read_scalars

    curve = read_scalars(cfg.run_dir / "tensorboard")["train/loss"]
    assert {5, 30} <= {s for s, _ in curve} and all(np.isfinite(v) for _, v in curve)

    # exact row counts through the stages
    assert rd.manifest["data"]["rows"] == {"corpus": 120, "queries": 90, "qrels/train": 50, "qrels/test": 30,
                                           "qrels/dev": 10}
    cands = pq.read_table(cfg.run_dir / "candidates" / "candidates.parquet").to_pandas()
    assert st["mine"]["counts"]["queries"] == 50 and cands["qid"].nunique() == 50
    assert (cands.groupby("qid")["label"].sum() >= 1).all()  # every positive kept
    assert st["score"]["counts"]["pairs_in"] == st["score"]["counts"]["pairs_out"] == len(cands)
    assert st["encode"]["counts"]["embeddings"] == 120 and st["index"]["counts"]["vectors"] == 120

    report = json.loads((cfg.run_dir / "eval" / "report.json").read_text())
    m = report["metrics"]
    assert set(m) == {"bm25", "student_zero_shot", "teacher_rerank@20", "teacher_ensemble_union@20",
                      "student_distilled"}
    assert m["student_distilled"]["ndcg@10"] > m["student_zero_shot"]["ndcg@10"] + 0.05
    assert m["student_distilled"]["mrr@10"] > m["student_zero_shot"]["mrr@10"]
    assert (cfg.run_dir / "eval" / "report.md").read_text().startswith("# Evaluation")
    assert (cfg.run_dir / "eval" / "metrics.png").stat().st_size > 1000
    # each first-stage ranking's metrics per query (for paired tests between runs): they average to the report's
    per_q = json.loads((cfg.run_dir / "eval" / "per_query.json").read_text())
    assert set(per_q) == {"bm25", "student_zero_shot", "student_distilled"}
    for system, values in per_q.items():
        assert all(len(values[k]) == 30 for k in m[system])
        assert {k: sum(v.values()) / 30 for k, v in values.items()} == pytest.approx(m[system])
    # the distilled student against its own start, paired over the same 30 queries, in the report and its text
    g = report["gain_over_start"]["tests"]["ndcg@10"]
    assert g["queries"] == 30 and g["diff"] == pytest.approx(m["student_distilled"]["ndcg@10"]
                                                           - m["student_zero_shot"]["ndcg@10"])
    assert g["wins"] + g["losses"] + g["ties"] == 30 and 0 < g["p"] <= 1
    assert "Paired over the 30 queries, distilled vs its start" in (cfg.run_dir / "eval" / "report.md").read_text()
    assert report["sizes"]["teacher_parameters"] > report["sizes"]["student_parameters"]
    # the dev split is evaluated beside test (for choosing settings), never instead of it
    assert report["split"] == "test" and report["queries"] == 30 and report["dev"]["queries"] == 10
    assert set(report["dev"]["metrics"]) == {"student_zero_shot", "student_distilled"}
    assert not set(report["dev"]["metrics"]) - set(m) and "Dev split (10 held-out" in (
        cfg.run_dir / "eval" / "report.md").read_text()

    # 3) a third run does nothing
    run_pipeline(cfg)
    out = capsys.readouterr().out
    assert all(f"[{s}] already finished, skipped" in out for s in STAGES)


@pytest.mark.timeout(600)
def test_sweep_shares_the_teacher_work_and_tables_every_system(ray_session, assets, capsys):
    """A sweep over the finished run above: the variant (a 1-layer student on hard labels) shares teacher,
    candidates and scores with the base run (mined by the base's student), trains and evaluates its own.
    (The variant trains on one worker and encodes with one actor: the run above covers two of each, and
    every worker or actor is a process that imports torch.)"""
    base_cfg = _main(assets)
    if not (base_cfg.run_dir / "eval").exists():
        pytest.skip("needs the pipeline run above")
    before = json.loads((base_cfg.run_dir / "manifest.json").read_text())["stages"]
    cfg = _main(assets, sweep={"variants": {"small_hard": {
        "student.num_layers": 1, "training.losses": {"infonce": 1.0}, "training.max_steps": 10,
        "training.num_workers": 1, "encoding.actors": 1}}})
    run_with_sweep(cfg)
    out = capsys.readouterr().out
    assert all(f"[{s}] already finished, skipped" in out for s in STAGES)  # the sweep leaves the base run alone
    assert json.loads((base_cfg.run_dir / "manifest.json").read_text())["stages"] == before
    vdir = cfg.run_dir / "sweep" / "small_hard-seed0"
    vst = json.loads((vdir / "manifest.json").read_text())["stages"]
    assert [s for s in STAGES if vst[s].get("shared_from")] == ["teacher", "mine", "score"]
    assert (vdir / "teacher").is_symlink() and (vdir / "teacher").resolve() == (cfg.run_dir / "teacher").resolve()
    assert vst["train"]["counts"]["steps"] == 10 and vst["encode"]["counts"]["embeddings"] == 120
    assert not (vdir / "student").is_symlink()
    from distill.models import DualEncoder

    assert DualEncoder.load(vdir / "student").num_layers == 1
    table = json.loads((cfg.run_dir / "sweep" / "table.json").read_text())
    assert list(table["systems"]) == ["distilled", "small_hard"]
    assert set(table["reference"]) == {"bm25", "student_zero_shot", "teacher_rerank@20", "teacher_ensemble_union@20"}
    base_m = json.loads((cfg.run_dir / "eval" / "report.json").read_text())["metrics"]["student_distilled"]
    assert table["systems"]["distilled"]["mean"] == base_m  # the base run is the distilled system's seed 0
    small = table["systems"]["small_hard"]
    assert small["parameters"] < table["systems"]["distilled"]["parameters"] and small["query_latency_ms"] > 0
    assert "| small_hard | 1 |" in (cfg.run_dir / "sweep" / "table.md").read_text()
    assert small["dev_mean"]["ndcg@10"] >= 0 and table["dev_queries"] == 10
    vpq = json.loads((vdir / "eval" / "per_query.json").read_text())["student_distilled"]
    assert sum(vpq["ndcg@10"].values()) / 30 == pytest.approx(small["mean"]["ndcg@10"])
    assert table["selected_on_dev"] == "distilled"  # the only system of its size trained on the teacher
    # a second sweep run trains nothing
    run_with_sweep(cfg)
    out = capsys.readouterr().out
    assert "[train] already finished, skipped" in out and "[sweep] shares teacher, mine, score" in out


@pytest.mark.timeout(300)
def test_student_export_loads_everywhere(ray_session, assets):
    """The student dir loads with plain transformers and SentenceTransformer, same embeddings."""
    cfg = _main(assets)
    student_dir = cfg.run_dir / "student"
    if not student_dir.exists():
        pytest.skip("needs the pipeline run above")
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer

    from distill.models import DualEncoder

    texts = ["babomo dofena report", "the of and"]
    ours = DualEncoder.load(student_dir).encode(texts)
    st = SentenceTransformer(str(student_dir), device="cpu").encode(texts, normalize_embeddings=False)
    np.testing.assert_allclose(st, ours, atol=1e-5)
    tok, model = AutoTokenizer.from_pretrained(student_dir), AutoModel.from_pretrained(student_dir)
    import torch

    with torch.no_grad():
        b = tok(texts, padding=True, return_tensors="pt")
        h = model(**b).last_hidden_state
        mean = (h * b["attention_mask"][..., None]).sum(1) / b["attention_mask"].sum(1, keepdim=True)
        plain = torch.nn.functional.normalize(mean, dim=-1).numpy()
    np.testing.assert_allclose(plain, ours, atol=1e-5)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_teacher_stage_finetunes_cross_encoder(ray_session, assets):
    cfg = _config(assets, name="ce", stages=["teacher"],
                  teacher={"kind": "cross-encoder", "model": str(assets / "ce"), "finetune": True, "epochs": 2,
                           "batch_size": 8, "negatives_per_query": 3, "max_length": 48, "cpus_per_worker": 1})
    rd = run_pipeline(cfg)
    st = rd.manifest["stages"]["teacher"]
    # 60 groups, 2 queries (8 pairs / 4 per group) per step, 1 worker: 30 steps per epoch
    assert st["counts"] == {"groups": 60, "steps": 60}
    from distill.models import CrossEncoder

    ce = CrossEncoder(str(cfg.run_dir / "teacher_model"), 48)
    scores = ce.score(["q a", "q b"], ["d a", "d b"])
    assert scores.shape == (2,) and np.isfinite(scores).all()



@pytest.mark.slow
@pytest.mark.timeout(600)
def test_embeddistill_and_lead_across_widths_depths_tokenizers(ray_session, assets):
    """Dual-head CE teacher (48 wide, 3 layers, its own vocabulary order) teaching a 32-wide 2-layer
    student with KL + embedding matching (learned projection) + LEAD, DeepSpeed on, with generated
    queries added to training."""
    from builders import make_beir

    vocab = make_beir(assets / "data2", topics=4, docs_per_topic=6, train_queries=16, test_queries=4)["vocab"]
    make_tiny_bert(assets / "ce3", list(reversed(vocab)) + ["extra1", "extra2"], hidden=48, layers=3,
                   cross_encoder=True)
    cfg = _config(assets, name="geo", stages=["teacher", "mine", "score", "train"],
                  data={"dir": str(assets / "data2")},
                  teacher={"kind": "cross-encoder", "head": "dual", "model": str(assets / "ce3"), "finetune": False,
                           "max_length": 48},
                  mining={"sources": ["bm25"], "depth": 6,
                          "querygen": {"enabled": True, "per_doc": 1, "min_words": 3, "max_words": 5}},
                  scoring={"store_embeddings": True, "store_layer_scores": True},
                  training={"max_steps": 4, "queries_per_batch": 2, "group_size": 4, "checkpoint_every": 4,
                            "losses": {"kl": 1.0, "embedding": 0.5, "lead": 0.5},
                            "lead": {"pairs_per_step": 2}})
    rd = run_pipeline(cfg)
    scores = pq.read_table(cfg.run_dir / "teacher" / "scores.parquet").to_pandas()
    assert len(scores["teacher_q_emb"].iloc[0]) == 48 and len(scores["teacher_layer_scores"].iloc[0]) == 3
    gen = rd.manifest["stages"]["mine"]["query_generation"]
    assert gen["generated"] == 24 and gen["kept"] + gen["duplicate"] + gen["leaks_test"] + gen["empty"] == 24
    assert rd.manifest["stages"]["mine"]["counts"]["queries"] == 16 + gen["kept"]
    assert scores["qid"].str.startswith("gen:").sum() > 0 and gen["kept"] > 0  # teacher scored them
    st = rd.manifest["stages"]["train"]
    assert st["counts"]["steps"] == 4 and st["counts"]["groups"] > 16  # generated queries joined training
    assert {"kl", "embedding", "lead"} <= set(st["final_metrics"])
    assert all(np.isfinite(st["final_metrics"][k]) for k in ("kl", "embedding", "lead"))
    w = st["lead_layer_weights"]
    assert {str(k) for k in w} == {"1", "2", "3"} and sum(w.values()) == pytest.approx(1.0)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_asymmetric_student_searches_the_teacher_index(ray_session, assets):
    """EmbedDistill asymmetric: a 64-wide query encoder (+ learned projection) trained against a 48-wide
    dual-encoder teacher's fixed document vectors; the index is built from the teacher, evaluation and
    serving use the student's queries on it. (A projection can only reach a subspace as wide as the
    student, so the student here is the wider one.)"""
    vocab = json.loads((assets / "vocab.json").read_text())
    make_bow_encoder(assets / "teacher48", vocab, hidden=48)
    make_tiny_bert(assets / "student64", vocab, hidden=64, layers=2)
    cfg = _config(assets, name="asym",  # fp32: the index and served scores are checked against fp32 encodings
                  teacher={"model": str(assets / "teacher48")}, student={"model": str(assets / "student64")},
                  scoring={"store_embeddings": True, "precision": "fp32"}, encoding={"precision": "fp32"},
                  training={"asymmetric": True, "max_steps": 30, "checkpoint_every": 30,
                            "losses": {"kl": 1.0, "embedding": 1.0, "infonce": 0.2}})
    rd = run_pipeline(cfg)
    st = rd.manifest["stages"]
    assert st["encode"]["encoded_by"] == "teacher" and st["encode"]["counts"]["dim"] == 48
    assert st["train"]["counts"]["steps"] == 30 and np.isfinite(st["train"]["final_metrics"]["embedding"])

    from distill.data import read_beir
    from distill.index import load_index
    from distill.models import DualEncoder

    # the document side is the teacher's, untouched by training: index vectors == teacher embeddings
    index = load_index(cfg.run_dir / "index")
    assert index.meta["documents_encoded_by"] == "teacher" and index.index.ntotal == 120
    data = read_beir(assets / "data")
    teacher = DualEncoder(str(assets / "teacher48"), max_length=32)
    docs = [data.doc_text(d) for d in index.docids]
    stored = index.index.reconstruct_n(0, index.index.ntotal)
    np.testing.assert_allclose(stored, teacher.encode(docs), atol=1e-5)

    student = DualEncoder.load(cfg.run_dir / "student")
    assert student.dim == 48 and student.projection.weight.shape == (48, 64)
    m = json.loads((cfg.run_dir / "eval" / "report.json").read_text())["metrics"]
    assert {"teacher_retrieval", "student_distilled", "student_zero_shot"} <= set(m)
    # training moved the query encoder into the teacher's space: compare with the untrained start (same
    # projection init) on the same index. (On random toy words the student cannot generalise much beyond
    # the training queries' words; the quality claim is measured on real text with configs/demo_asymmetric.yaml.)
    from distill.metrics import evaluate_run, to_run

    qrels = data.qrels["test"]
    qids = list(qrels)
    qtexts = [data.queries[q] for q in qids]
    t_q = teacher.encode(qtexts)
    start = DualEncoder(str(assets / "student64"), max_length=32, output_dim=48)
    cos = {name: float((enc.encode(qtexts) * t_q).sum(1).mean()) for name, enc in (("start", start), ("trained", student))}
    assert cos["trained"] > 0.4 and cos["trained"] > cos["start"] + 0.3
    ndcg_start = evaluate_run(qrels, to_run(qids, *index.search(start.encode(qtexts), 100)))["ndcg@10"]
    assert m["student_distilled"]["ndcg@10"] > ndcg_start

    # serving reads the same run dir: the student's query vector against the teacher's documents
    from serve.core import Retrieval

    ids, scores, _ = Retrieval(cfg.run_dir, precision="fp32").search(["babomo dofena report"], 5)
    q = student.encode(["babomo dofena report"])[0]
    by_id = dict(zip(index.docids, stored))
    assert len(ids[0]) == 5
    np.testing.assert_allclose(scores[0], [float(q @ by_id[d]) for d in ids[0]], atol=1e-4)


@pytest.mark.timeout(300)
def test_ensemble_teacher_fits_on_dev_scores_every_member_and_reranks(ray_session, assets):
    """The main run's ensemble teacher (the bag-of-words dual encoder + BM25): weights fitted on the 10 dev
    queries only, each member's raw score stored beside the fused one for every candidate, the evaluation's
    teacher rows use it, and the in-process Serve reranker loads it from the run directory."""
    from distill import ensemble as ens
    from serve.core import Reranking

    cfg = _main(assets)
    if not (cfg.run_dir / "eval").exists():
        pytest.skip("needs the pipeline run above")
    rd = run_pipeline(cfg)  # finished: every stage skipped
    cands = pq.read_table(rd.stage_path("mine") / "candidates.parquet").to_pandas()
    scores = pq.read_table(rd.stage_path("score") / "scores.parquet").to_pandas()
    assert len(scores) == len(cands) and set(zip(scores.qid, scores.docid)) == set(zip(cands.qid, cands.docid))
    assert {"teacher_member_bow", "teacher_member_bm25", "teacher_score"} <= set(scores.columns)
    record = ens.read_ensemble(rd.stage_path("score"))
    in_manifest = json.loads((rd.path / "manifest.json").read_text())["stages"]["score"]["ensemble"]
    assert in_manifest["weights"] == record["weights"] and "dev_ndcg@10" in in_manifest
    assert record["chosen_on"] == "dev" and record["dev"]["queries"] == 10 and len(record["dev"]["grid"]) == 5
    assert sum(record["weights"].values()) == pytest.approx(1.0)
    from distill.pipeline import load_data

    data = load_data(rd)
    assert not set(scores.qid) & set(data.qrels["dev"])  # no dev query is trained on
    assert np.allclose(scores["teacher_score"], ens.fused_scores(scores, record), atol=1e-5)
    # the BM25 member's column is BM25 over the whole corpus for that (query, document)
    scorer = ens.BM25PairScorer(list(data.corpus), [data.doc_text(d) for d in data.corpus])
    head = scores.head(50)
    assert np.allclose(head["teacher_member_bm25"], scorer.score([data.queries[q] for q in head.qid],
                                                                   list(head.docid)), atol=1e-5)
    report = json.loads((rd.stage_path("evaluate") / "report.json").read_text())
    assert {"teacher_rerank@20", "teacher_ensemble_union@20", "student_distilled"} <= set(report["metrics"])
    assert report["ensemble"]["weights"] == record["weights"]
    assert report["sizes"]["teacher_parameters"] > 0
    rr = Reranking.from_run(rd.path)
    qtext, docs = data.queries[scores.qid.iloc[0]], [data.doc_text(d) for d in data.corpus][:5]
    out = rr.score([qtext] * 5, docs)
    assert out.shape == (5,) and np.all(np.isfinite(out))

