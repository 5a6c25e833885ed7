"""GPU check of the product's CUDA paths (issue 15, "speed"): correctness on the device against CPU fp32,
then throughput of a MiniLM-L6-shaped student and teacher, against the device's measured matmul peak.

    python benchmarks/cuda_check.py [--device cuda|cpu] [--quick] [--out benchmarks/results/cuda_check.json]

Needs only torch + transformers (+ numpy, pandas, pyarrow): no Ray, DeepSpeed, faiss or pydantic, so it runs
on a bare GPU image. It imports distill.precision, distill.models (DualEncoder, CrossEncoder),
distill.losses, distill.small_encoders, tests/builders.py, distill.reader (FiDReader),
distill.cross_encoder_attention and the Ray Data actor classes distill.stages.encode.EncoderActor / distill.stages.score.TeacherActor, which
are plain classes whose modules import no Ray at module level (their ``if torch.cuda.is_available():
.to("cuda")`` branches are the product's GPU paths). distill.config (pydantic), distill.stages.train
(Ray Train / DeepSpeed) and distill.index (faiss) are not imported.

Models are random, built from configs (no weights travel). Checks compare the device against CPU fp32 of
the same weights; with ``--device cpu`` the reference is the same device, so the checks exercise the code
paths only (that is what tests/unit/test_cuda_check.py runs). Throughput: tokens/s and ms/step, with achieved
FLOP/s as a share of the 8192^3 matmul rate measured in the same run (FLOPs estimated as
2 * non-embedding params * tokens + attention 4 * layers * T^2 * hidden per sequence for a forward; 3x that
for a training step).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))  # tests/builders.py, as `builders`

import numpy as np  # noqa: E402
import torch  # noqa: E402

VOCAB = ["cat", "dog", "car", "bark", "animal", "loud", "red", "fast", "small", "house", "tree", "river",
         "blue", "green", "road", "city", "rain", "sun", "night", "light", "stone", "water", "bird", "song"]


# ---- helpers --------------------------------------------------------------------------------------------
def sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def texts(n: int, seed: int = 0, lo: int = 1, hi: int = 12) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(VOCAB, int(rng.integers(lo, hi + 1)))) for _ in range(n)]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)


def run_check(name: str, fn, *args) -> dict:
    """Run one check; an exception is a failed check with its error, never the end of the run."""
    t0 = time.perf_counter()
    try:
        res = fn(*args)
    except Exception as e:  # noqa: BLE001 - a check's failure is a result
        res = {"passed": False, "error": f"{type(e).__name__}: {e}",
               "traceback": traceback.format_exc(limit=6)[-2000:]}
    res = {"name": name, **res, "seconds": round(time.perf_counter() - t0, 3)}
    return res


def models_dir(tmp: Path) -> dict[str, Path]:
    """Tiny random models, saved once: a BERT (dual encoder / dual-head cross-encoder), a BERT cross-encoder
    (linear head, init 0.1 so its logits spread), a T5 (FiD reader)."""
    from builders import make_tiny_bert, make_tiny_t5

    out = {"de": tmp / "de", "ce": tmp / "ce", "t5": tmp / "t5"}
    if not (out["de"] / "config.json").exists():
        make_tiny_bert(out["de"], VOCAB, hidden=64, layers=2, heads=2, seed=1)
        make_tiny_bert(out["ce"], VOCAB, hidden=64, layers=2, heads=2, cross_encoder=True, seed=2,
                       initializer_range=0.1)
        make_tiny_t5(out["t5"], VOCAB, d_model=32, layers=2, heads=4, seed=3)
    return out


# ---- correctness checks ---------------------------------------------------------------------------------
def check_precision(device: str) -> dict:
    """auto -> bf16 on a GPU (fp32/bf16 as given); autocast('auto', device) makes matmuls bf16 there."""
    from distill import precision as P

    got = {"auto": P.resolve("auto", device, warn=False), "fp32": P.resolve("fp32", device),
           "bf16": P.resolve("bf16", device, warn=False)}
    dev_obj = torch.device(device if device != "cuda" else "cuda:0")
    got_obj = P.resolve("auto", dev_obj, warn=False)
    a = torch.randn(8, 8, device=device)
    with P.autocast("auto", dev_obj):
        auto_dtype = str((a @ a).dtype)
    with P.autocast("fp32", device):
        fp32_dtype = str((a @ a).dtype)
    out = {"resolved": got, "resolved_torch_device": got_obj, "autocast_auto_matmul_dtype": auto_dtype,
           "autocast_fp32_matmul_dtype": fp32_dtype, "describe": P.describe("auto", device)}
    ok = got["fp32"] == "fp32" and got["bf16"] == "bf16" and fp32_dtype == "torch.float32"
    if device.startswith("cuda"):
        native = torch.cuda.is_bf16_supported(including_emulation=False) if _has_emulation_arg() else None
        out["torch_bf16_native"] = native
        out["torch_is_bf16_supported_default"] = bool(torch.cuda.is_bf16_supported())
        ok = ok and got["auto"] == "bf16" and got_obj == "bf16" and auto_dtype == "torch.bfloat16"
        out["expected_auto"] = "bf16"
    else:
        exp = "bf16" if P.cpu_bf16_pays() else "fp32"
        out["expected_auto"] = exp
        ok = ok and got["auto"] == exp and auto_dtype == ("torch.bfloat16" if exp == "bf16" else "torch.float32")
    return {"passed": bool(ok), **out}


def _has_emulation_arg() -> bool:
    import inspect

    return "including_emulation" in inspect.signature(torch.cuda.is_bf16_supported).parameters


def check_dual_encoder(device: str, tmp: Path) -> dict:
    """DualEncoder.encode on the device, fp32 and bf16, against CPU fp32: cosine >= 0.999 per text."""
    from distill.models import DualEncoder

    m = models_dir(tmp)
    t = texts(48, seed=1)
    out = {}
    ok = True
    for pooling in ("mean", "cls"):
        ref = DualEncoder(str(m["de"]), pooling=pooling, max_length=32).encode(t, batch_size=16)
        enc = DualEncoder(str(m["de"]), pooling=pooling, max_length=32).to(device)
        for prec in ("fp32", "bf16"):
            e = enc.encode(t, batch_size=16, precision=prec)
            c = cosines(e, ref)
            out[f"{pooling}_{prec}_min_cosine"] = float(c.min())
            out[f"{pooling}_{prec}_max_abs"] = float(np.abs(e - ref).max())
            ok = ok and e.dtype == np.float32 and e.shape == ref.shape and bool(np.isfinite(e).all())
            ok = ok and c.min() >= 0.999 and (prec == "bf16" or np.abs(e - ref).max() <= 1e-4)
        out[f"{pooling}_encoder_device"] = str(enc.device)
    return {"passed": bool(ok), **out}


def check_cross_encoder(device: str, tmp: Path) -> dict:
    """CrossEncoder.score (linear head) and score_all (dual head, vectors + layer scores) on the device
    against CPU fp32: fp32 within 1e-3, bf16 by correlation."""
    from distill.models import CrossEncoder

    m = models_dir(tmp)
    q, d = texts(40, seed=2, hi=5), texts(40, seed=3, lo=3, hi=14)
    out, ok = {}, True
    ref = CrossEncoder(str(m["ce"]), max_length=48).score(q, d, batch_size=16)
    ce = CrossEncoder(str(m["ce"]), max_length=48).to(device)
    for prec in ("fp32", "bf16"):
        s = ce.score(q, d, batch_size=16, precision=prec)
        diff = float(np.abs(s - ref).max())
        r = float(np.corrcoef(s, ref)[0, 1])
        out[f"linear_{prec}_max_abs"], out[f"linear_{prec}_pearson"] = diff, r
        ok = ok and s.dtype == np.float32 and bool(np.isfinite(s).all())
        ok = ok and (diff <= 1e-3 if prec == "fp32" else r >= 0.99)
    out["linear_score_std"] = float(ref.std())
    ref_d = CrossEncoder(str(m["de"]), max_length=48, head="dual").score_all(q, d, 16, vectors=True, layers=True)
    ced = CrossEncoder(str(m["de"]), max_length=48, head="dual").to(device)
    for prec in ("fp32", "bf16"):
        r = ced.score_all(q, d, 16, vectors=True, layers=True, precision=prec)
        tol = 1e-3 if prec == "fp32" else 0.15  # dual score = 20 * cosine: bf16 rounding of cos ~ 4e-3 -> 0.08
        for k in ("score", "q_emb", "d_emb", "layer_scores"):
            diff = float(np.abs(r[k] - ref_d[k]).max())
            out[f"dual_{prec}_{k}_max_abs"] = diff
            lim = tol if k == "score" else (1e-4 if prec == "fp32" else 2e-2)
            ok = ok and r[k].dtype == np.float32 and bool(np.isfinite(r[k]).all()) and diff <= lim
    return {"passed": bool(ok), **out}


def _loss_cases(gen: torch.Generator):
    """Each loss with inputs drawn from ``gen`` (CPU), as (name, fn(tensors) -> loss, tensors, grad keys)."""
    from distill import losses as L

    B, K, N, D, Lt = 4, 6, 24, 16, 3
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    mask = torch.ones(B, K, dtype=torch.bool)
    mask[1, 4:] = False
    return [
        ("listwise_kl", lambda x: L.listwise_kl(x["s"], x["t"], 0.5, 0.3, x["mask"]),
         {"s": r(B, K), "t": r(B, K) * 3, "mask": mask}, ["s"]),
        ("margin_mse", lambda x: L.margin_mse(x["s"], x["t"], 1.0, 0.5, x["mask"]),
         {"s": r(B, K), "t": r(B, K) * 3, "mask": mask}, ["s"]),
        ("score_mse", lambda x: L.score_mse(x["s"], x["t"], 2.0, 1.0, x["mask"]),
         {"s": r(B, K), "t": r(B, K), "mask": mask.float()}, ["s"]),
        ("info_nce", lambda x: L.info_nce(torch.nn.functional.normalize(x["q"], dim=-1),
                                          torch.nn.functional.normalize(x["d"], dim=-1), x["pos"], 0.05, x["dm"]),
         {"q": r(B, D), "d": r(N, D), "pos": torch.tensor([0, 6, 12, 18]),
          "dm": torch.arange(N) != 23}, ["q", "d"]),
        ("embedding_match_l2", lambda x: L.embedding_match(x["s"], x["t"], "l2", x["m"]),
         {"s": r(N, D), "t": r(N, D), "m": torch.arange(N) < 20}, ["s"]),
        ("embedding_match_cosine", lambda x: L.embedding_match(x["s"], x["t"], "cosine"),
         {"s": r(N, D), "t": r(N, D)}, ["s"]),
        ("lead_loss", lambda x: L.lead_loss({1: x["s1"], 2: x["s2"]}, x["t"], [(1, 2), (2, 3)], {2: 0.4, 3: 0.6},
                                            0.05, x["mask"]),
         {"s1": r(B, K) * 0.1, "s2": r(B, K) * 0.1, "t": r(B, K, Lt) * 0.1, "mask": mask}, ["s1", "s2"]),
    ]


def check_losses(device: str) -> dict:
    """Each loss in distill.losses: forward + backward on the device, loss and grads equal to CPU's
    (fp32, rtol 1e-4), finite; and under bf16 autocast on the device, finite and close."""
    from distill.precision import autocast

    out, ok = {}, True
    for name, fn, cpu_x, gkeys in _loss_cases(torch.Generator().manual_seed(0)):
        res = {}
        for where in ("cpu", device, f"{device}+bf16"):
            x = {k: v.detach().clone().to(where.split("+")[0]) for k, v in cpu_x.items()}
            for k in gkeys:
                x[k].requires_grad_(True)
            with autocast("bf16" if where.endswith("bf16") else "fp32", where.split("+")[0]):
                loss = fn(x)
            loss.backward()
            res[where] = (float(loss.detach()), [x[k].grad.float().cpu() for k in gkeys], str(loss.dtype))
        l_cpu, g_cpu, _ = res["cpu"]
        l_dev, g_dev, _ = res[device]
        l_bf, g_bf, dt_bf = res[f"{device}+bf16"]
        gdiff = max(float((a - b).abs().max()) for a, b in zip(g_dev, g_cpu))
        finite = all(bool(torch.isfinite(g).all()) for g in g_dev + g_bf) and math.isfinite(l_dev) and math.isfinite(l_bf)
        this = (finite and abs(l_dev - l_cpu) <= 1e-4 * max(1.0, abs(l_cpu)) and gdiff <= 1e-4
                and abs(l_bf - l_cpu) <= 0.05 * max(1.0, abs(l_cpu)))
        out[name] = {"passed": bool(this), "loss_cpu": l_cpu, "loss_device": l_dev, "loss_device_bf16": l_bf,
                     "bf16_loss_dtype": dt_bf, "max_grad_abs_diff": gdiff}
        ok = ok and this
    return {"passed": bool(ok), "losses": out}


def _train_step(model, opt, q, d, teacher, K, device, precision, loss="kl"):
    """One distillation step of a dual encoder: E(q) . E(d) over each query's K candidates -> listwise KL
    to the teacher's scores (+ in-batch InfoNCE), forward + backward + AdamW; returns the loss."""
    from distill.losses import info_nce, listwise_kl
    from distill.precision import autocast

    opt.zero_grad(set_to_none=True)
    with autocast(precision, device):
        qe = model(**q)
        de = model(**d)
        B = qe.shape[0]
        s = (qe.unsqueeze(1) * de.view(B, K, -1)).sum(-1) / 0.05
        total = listwise_kl(s, teacher)
        if loss == "kl+infonce":
            total = total + info_nce(qe, de, torch.arange(B, device=qe.device) * K, 0.05)
    total.backward()
    opt.step()
    return total


def check_train_step(device: str, tmp: Path) -> dict:
    """A DualEncoder training step (KL + InfoNCE, AdamW) on the device: fp32 loss and grads equal to CPU's
    (dropout off), bf16-autocast loss close, grads finite, parameters move; also 3 bf16 steps in train mode."""
    from distill.models import DualEncoder

    m = models_dir(tmp)
    q_t, d_t = texts(4, seed=4, hi=5), texts(4 * 5, seed=5, lo=3, hi=14)
    teacher = torch.randn(4, 5, generator=torch.Generator().manual_seed(1)) * 3
    out, ok = {}, True
    res = {}
    for where, prec in (("cpu", "fp32"), (device, "fp32"), (device, "bf16")):
        torch.manual_seed(0)
        model = DualEncoder(str(m["de"]), max_length=32).to(where)
        model.eval()  # dropout off: the same function on both devices
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        before = [p.detach().clone() for p in model.parameters()]
        loss = _train_step(model, opt, model.tokenize(q_t), model.tokenize(d_t), teacher.to(where), 5, where, prec,
                           "kl+infonce")
        grads = {n: p.grad.detach().float().cpu() for n, p in model.named_parameters() if p.grad is not None}
        moved = sum(int(not torch.equal(a, p.detach())) for a, p in zip(before, model.parameters()))
        res[(where, prec)] = (float(loss.detach()), grads, moved, len(before))
    l_cpu, g_cpu, _, _ = res[("cpu", "fp32")]
    for prec in ("fp32", "bf16"):
        l, g, moved, n = res[(device, prec)]
        gdiff = max(float((g[k] - g_cpu[k]).abs().max()) for k in g_cpu)
        gscale = max(float(g_cpu[k].abs().max()) for k in g_cpu)
        finite = all(bool(torch.isfinite(v).all()) for v in g.values()) and math.isfinite(l)
        tol_l = 1e-4 if prec == "fp32" else 0.03
        this = finite and abs(l - l_cpu) <= tol_l * max(1.0, abs(l_cpu)) and moved == n and set(g) == set(g_cpu)
        if prec == "fp32":
            this = this and gdiff <= 1e-3 * max(1.0, gscale)
        out[prec] = {"loss_cpu": l_cpu, "loss_device": l, "max_grad_abs_diff": gdiff, "max_grad_abs_cpu": gscale,
                     "params_moved": f"{moved}/{n}", "passed": bool(this)}
        ok = ok and this
    torch.manual_seed(0)
    model = DualEncoder(str(m["de"]), max_length=32).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = [float(_train_step(model, opt, model.tokenize(q_t), model.tokenize(d_t), teacher.to(device), 5,
                                device, "bf16").detach()) for _ in range(3)]
    out["bf16_train_mode_3_steps"] = losses
    ok = ok and all(math.isfinite(x) for x in losses)
    return {"passed": bool(ok), **out}


def check_small_encoders(device: str, tmp: Path) -> dict:
    """CNN and BiLSTM students (distill.small_encoders; the LSTM packs sequences, lengths on CPU) on the
    device vs CPU: encode (fp32, bf16) and one training step's loss."""
    from distill.models import DualEncoder

    m = models_dir(tmp)
    t = texts(24, seed=6)
    out, ok = {}, True
    for arch in ("cnn", "lstm"):
        kw = dict(arch=arch, num_layers=2, hidden_size=32, max_length=32)
        ref = DualEncoder(str(m["de"]), **kw).encode(t, batch_size=8)
        enc = DualEncoder(str(m["de"]), **kw).to(device)
        for prec in ("fp32", "bf16"):
            e = enc.encode(t, batch_size=8, precision=prec)
            c = float(cosines(e, ref).min())
            out[f"{arch}_{prec}_min_cosine"] = c
            ok = ok and bool(np.isfinite(e).all()) and c >= (0.9999 if prec == "fp32" else 0.99)
        # one step, eval mode (no dropout), loss on device == CPU
        teacher = torch.randn(4, 3, generator=torch.Generator().manual_seed(2))
        ls = []
        for where in ("cpu", device):
            model = DualEncoder(str(m["de"]), **kw).to(where).train()  # no dropout; cuDNN's RNN backward needs train
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            loss = _train_step(model, opt, model.tokenize(t[:4]), model.tokenize(t[4:16]), teacher.to(where), 3,
                               where, "fp32")
            grads_ok = all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
            ls.append(float(loss.detach()))
            ok = ok and grads_ok
        out[f"{arch}_step_loss_cpu_device"] = ls
        ok = ok and abs(ls[0] - ls[1]) <= 1e-4 * max(1.0, abs(ls[0]))
    return {"passed": bool(ok), **out}


def check_actors(device: str, tmp: Path) -> dict:
    """The Ray Data actor classes, built in this process (no Ray): EncoderActor and TeacherActor move their
    model to cuda when torch sees a GPU and resolve precision auto there; outputs vs CPU fp32."""
    from distill.models import CrossEncoder, DualEncoder
    from distill.stages.encode import EncoderActor
    from distill.stages.score import TeacherActor

    m = models_dir(tmp)
    threads = torch.get_num_threads()
    t = texts(32, seed=7)
    out, ok = {}, True
    ea = EncoderActor(str(m["de"]), {"max_length": 32}, threads, 8, precision="auto")
    emb = ea({"id": np.arange(len(t)), "text": np.array(t, dtype=object)})["embedding"]
    ref = DualEncoder(str(m["de"]), max_length=32).encode(t, batch_size=8)
    out["encoder_actor"] = {"device": str(ea.encoder.device), "precision": ea.precision,
                            "min_cosine": float(cosines(emb, ref).min())}
    ok = ok and out["encoder_actor"]["min_cosine"] >= 0.999
    q, d = texts(24, seed=8, hi=5), texts(24, seed=9, lo=3, hi=14)
    batch = {"qid": np.array([f"q{i}" for i in range(24)], dtype=object),
             "docid": np.array([f"d{i}" for i in range(24)], dtype=object),
             "query": np.array(q, dtype=object), "doc": np.array(d, dtype=object)}
    for head, path in (("linear", m["ce"]), ("dual", m["de"])):
        ta = TeacherActor(str(path), "cross-encoder", 48, threads, 8, head=head, store_embeddings=head == "dual",
                          store_layer_scores=head == "dual", precision="auto")
        res = ta(batch)
        ref = CrossEncoder(str(path), 48, head=head).score_all(q, d, 8, vectors=head == "dual",
                                                               layers=head == "dual")
        s = res["teacher_score"]
        r = float(np.corrcoef(s, ref["score"])[0, 1])
        out[f"teacher_actor_{head}"] = {"device": str(next(ta.model.parameters()).device),
                                        "precision": ta.precision, "pearson": r,
                                        "max_abs": float(np.abs(s - ref["score"]).max())}
        ok = ok and bool(np.isfinite(s).all()) and r >= 0.99
        if head == "dual":
            c = float(cosines(res["teacher_q_emb"], ref["q_emb"]).min())
            out[f"teacher_actor_{head}"]["q_emb_min_cosine"] = c
            ok = ok and c >= 0.999 and res["teacher_layer_scores"].shape == ref["layer_scores"].shape
    if device.startswith("cuda"):
        ok = ok and out["encoder_actor"]["device"].startswith("cuda") and ea.precision == "bf16"
        ok = ok and all(out[f"teacher_actor_{h}"]["device"].startswith("cuda") and
                        out[f"teacher_actor_{h}"]["precision"] == "bf16" for h in ("linear", "dual"))
    return {"passed": bool(ok), **out}


def check_attention_teachers(device: str, tmp: Path) -> dict:
    """Attention-signal teachers on the device vs CPU (fp32, 1e-4): the FiD reader's passage scores
    (first output token, and its own greedy answer) and a cross-encoder's query-to-passage attention."""
    from distill.models import CrossEncoder
    from distill.cross_encoder_attention import cross_encoder_attention_scores
    from distill.reader import FiDReader

    m = models_dir(tmp)
    out, ok = {}, True
    question, passages = "red car fast", texts(6, seed=10, lo=3, hi=12)
    for mode, att in (("first", {"output_tokens": "first"}), ("answer", {})):
        try:
            ref_r = FiDReader(str(m["t5"]), max_length=32, answer_max_length=6)
            dev_r = FiDReader(str(m["t5"]), max_length=32, answer_max_length=6).to(device)
            a = ref_r.passage_scores(question, passages, att, batch_size=4)
            b = dev_r.passage_scores(question, passages, att, batch_size=4)
        except Exception as e:  # noqa: BLE001 - recorded, with what the reader's model was set to
            cfg = ref_r.model.config
            out[f"reader_{mode}_error"] = (f"{type(e).__name__}: {e} (attn_implementation "
                                           f"{getattr(cfg, '_attn_implementation', None)!r}, "
                                           f"{type(ref_r.model).__name__})")
            ok = False
            continue
        diff = float(np.abs(a - b).max())
        out[f"reader_{mode}_max_abs"] = diff
        ok = ok and bool(np.isfinite(b).all()) and b.shape == a.shape and (mode == "answer" or diff <= 1e-4)
    q, d = texts(16, seed=11, hi=5), texts(16, seed=12, lo=3, hi=14)
    a = cross_encoder_attention_scores(CrossEncoder(str(m["ce"]), 48), q, d, None, 8)
    b = cross_encoder_attention_scores(CrossEncoder(str(m["ce"]), 48).to(device), q, d, None, 8)
    out["cross_encoder_attention_max_abs"] = float(np.abs(a - b).max())
    ok = ok and out["cross_encoder_attention_max_abs"] <= 1e-4
    return {"passed": bool(ok), **out}


# ---- throughput -----------------------------------------------------------------------------------------
def minilm_config(quick: bool):
    from transformers import BertConfig

    if quick:
        return BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=256, max_position_embeddings=512)
    return BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                      intermediate_size=1536, max_position_embeddings=512)


def save_minilm(tmp: Path, quick: bool, cross: bool = False) -> Path:
    """A MiniLM-L6-shaped random BERT saved with a whole-word tokenizer (token ids are fed directly)."""
    from transformers import BertForSequenceClassification, BertModel

    from builders import SPECIAL, word_tokenizer

    d = tmp / ("minilm_ce" if cross else "minilm")
    if (d / "config.json").exists():
        return d
    cfg = minilm_config(quick)
    cfg.num_labels = 1
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg) if cross else BertModel(cfg, add_pooling_layer=False)
    model.save_pretrained(d, safe_serialization=True)
    word_tokenizer(SPECIAL + VOCAB).save_pretrained(d)
    return d


def forward_flops(cfg, n_seq: int, seq_len: int) -> float:
    """2 * non-embedding params * tokens + attention (QK^T and AV: 4 * T^2 * hidden per layer, per sequence)."""
    h, L, i = cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size
    per_layer = 4 * h * h + 2 * h * i  # Q, K, V, O + the two FFN matrices (biases, norms ignored)
    return 2.0 * L * per_layer * n_seq * seq_len + 4.0 * L * seq_len * seq_len * h * n_seq


def timed(fn, device, reps: int, warmup: int = 1) -> float:
    """Median seconds of ``fn`` over ``reps`` runs, after ``warmup``."""
    for _ in range(warmup):
        fn()
    sync(device)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def bench_matmul(device: str, n: int, reps: int) -> dict:
    out = {"n": n}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        s = timed(lambda: a @ b, device, reps, warmup=2)
        out[f"{name}_tflops"] = 2.0 * n ** 3 / s / 1e12
        del a, b
    out["tf32_matmul_allowed"] = bool(torch.backends.cuda.matmul.allow_tf32) if device.startswith("cuda") else None
    return out


def bench_encode(device: str, tmp: Path, quick: bool, n_texts: int, seq: int, batch: int, reps: int,
                 peak: dict) -> dict:
    """DualEncoder forward (mean pooling + L2 norm) over n_texts random-id sequences of ``seq`` tokens, in
    batches, fp32 vs bf16 autocast; then DualEncoder.encode end to end (tokenize + forward + copy back)."""
    from distill.models import DualEncoder
    from distill.precision import autocast

    path = save_minilm(tmp, quick)
    enc = DualEncoder(str(path), max_length=seq).to(device).eval()
    cfg = enc.backbone.config
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, cfg.vocab_size, (n_texts, seq), generator=g).to(device)
    mask = torch.ones_like(ids)
    flops = forward_flops(cfg, n_texts, seq)
    out = {"texts": n_texts, "seq_len": seq, "batch": batch, "params": sum(p.numel() for p in enc.parameters()),
           "gflop_per_pass": flops / 1e9}
    embs = {}
    for prec in ("fp32", "bf16"):
        def run():
            res = []
            with torch.inference_mode(), autocast(prec, device):
                for i in range(0, n_texts, batch):
                    res.append(enc(ids[i:i + batch], mask[i:i + batch]))
            return torch.cat(res)
        s = timed(run, device, reps)
        embs[prec] = run().float().cpu().numpy()
        out[prec] = {"seconds": s, "tokens_per_s": n_texts * seq / s, "texts_per_s": n_texts / s,
                     "tflops": flops / s / 1e12, "share_of_peak": flops / s / 1e12 / peak[f"{prec}_tflops"]}
    out["bf16_vs_fp32_min_cosine"] = float(cosines(embs["bf16"], embs["fp32"]).min())
    out["bf16_speedup"] = out["fp32"]["seconds"] / out["bf16"]["seconds"]
    # end to end: texts of seq-2 words (the tokenizer's whole-word vocabulary) -> seq tokens with [CLS]/[SEP]
    rng = np.random.default_rng(0)
    t = [" ".join(rng.choice(VOCAB, seq - 2)) for _ in range(n_texts)]
    t0 = time.perf_counter()
    enc.tokenize(t[:batch])
    tok_s = (time.perf_counter() - t0) * n_texts / batch
    enc.encode(t[:batch], batch_size=batch, precision="bf16")
    sync(device)
    t0 = time.perf_counter()
    e2e = enc.encode(t, batch_size=batch, precision="bf16")
    sync(device)
    s = time.perf_counter() - t0
    out["encode_end_to_end_bf16"] = {"seconds": s, "texts_per_s": n_texts / s, "tokens_per_s": n_texts * seq / s,
                                     "tokenize_seconds_est": tok_s, "finite": bool(np.isfinite(e2e).all())}
    return out


def bench_cross(device: str, tmp: Path, quick: bool, n_pairs: int, seq: int, batch: int, reps: int,
                peak: dict) -> dict:
    """A MiniLM-shaped cross-encoder (linear head) scoring n_pairs random-id pairs of ``seq`` tokens, bf16
    autocast (the score stage's forward) and fp32."""
    from distill.models import CrossEncoder
    from distill.precision import autocast

    path = save_minilm(tmp, quick, cross=True)
    ce = CrossEncoder(str(path), max_length=seq).to(device).eval()
    cfg = ce.model.config
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, cfg.vocab_size, (n_pairs, seq), generator=g).to(device)
    mask = torch.ones_like(ids)
    tt = torch.zeros_like(ids)
    tt[:, seq // 8:] = 1
    flops = forward_flops(cfg, n_pairs, seq)
    out = {"pairs": n_pairs, "seq_len": seq, "batch": batch, "gflop_per_pass": flops / 1e9}
    for prec in ("bf16", "fp32"):
        def run():
            res = []
            with torch.inference_mode(), autocast(prec, device):
                for i in range(0, n_pairs, batch):
                    res.append(ce(input_ids=ids[i:i + batch], attention_mask=mask[i:i + batch],
                                  token_type_ids=tt[i:i + batch]).float())
            return torch.cat(res)
        s = timed(run, device, reps)
        out[prec] = {"seconds": s, "pairs_per_s": n_pairs / s, "tokens_per_s": n_pairs * seq / s,
                     "tflops": flops / s / 1e12, "share_of_peak": flops / s / 1e12 / peak[f"{prec}_tflops"]}
    out["bf16_speedup"] = out["fp32"]["seconds"] / out["bf16"]["seconds"]
    return out


def bench_train(device: str, tmp: Path, quick: bool, shapes: list[tuple[int, int, int, int]], reps: int,
                peak: dict) -> dict:
    """ms per DualEncoder training step (forward + backward + AdamW; listwise KL + in-batch InfoNCE) at
    (queries, docs per query, query tokens, doc tokens), fp32 vs bf16 autocast."""
    from distill.models import DualEncoder

    path = save_minilm(tmp, quick)
    out = {}
    for B, K, qlen, dlen in shapes:
        key = f"{B}q_x_{K}d_q{qlen}_d{dlen}"
        out[key] = {}
        for prec in ("fp32", "bf16"):
            torch.manual_seed(0)
            model = DualEncoder(str(path), max_length=dlen).to(device).train()
            cfg = model.backbone.config
            opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
            g = torch.Generator().manual_seed(2)
            q = {"input_ids": torch.randint(5, cfg.vocab_size, (B, qlen), generator=g).to(device)}
            d = {"input_ids": torch.randint(5, cfg.vocab_size, (B * K, dlen), generator=g).to(device)}
            q["attention_mask"], d["attention_mask"] = torch.ones_like(q["input_ids"]), torch.ones_like(d["input_ids"])
            teacher = torch.randn(B, K, generator=g).to(device)
            losses = []
            s = timed(lambda: losses.append(_train_step(model, opt, q, d, teacher, K, device, prec,
                                                        "kl+infonce").detach()), device, reps, warmup=2)
            flops = 3 * (forward_flops(cfg, B, qlen) + forward_flops(cfg, B * K, dlen))
            finite = all(bool(torch.isfinite(x)) for x in losses)
            out[key][prec] = {"ms_per_step": s * 1e3, "tflops": flops / s / 1e12,
                              "share_of_peak": flops / s / 1e12 / peak[f"{prec}_tflops"], "loss_finite": finite,
                              "peak_mem_gib": (torch.cuda.max_memory_allocated() / 2 ** 30
                                               if device.startswith("cuda") else None)}
            del model, opt
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
        out[key]["bf16_speedup"] = out[key]["fp32"]["ms_per_step"] / out[key]["bf16"]["ms_per_step"]
    return out


# ---- main -----------------------------------------------------------------------------------------------
CHECKS = [("precision", check_precision, False), ("dual_encoder", check_dual_encoder, True),
          ("cross_encoder", check_cross_encoder, True), ("losses", check_losses, False),
          ("train_step", check_train_step, True), ("small_encoders", check_small_encoders, True),
          ("actors", check_actors, True), ("attention_teachers", check_attention_teachers, True)]


def run_checks(device: str, tmp: Path) -> list[dict]:
    return [run_check(name, fn, *((device, tmp) if needs_tmp else (device,))) for name, fn, needs_tmp in CHECKS]


def run_bench(device: str, tmp: Path, quick: bool) -> dict:
    if quick:
        n, seq, batch, reps, mm = 32, 32, 16, 2, 256
        shapes = [(2, 3, 8, 32), (4, 4, 8, 32)]
    else:
        n, seq, batch, reps, mm = 4096, 256, 256, 3, 8192
        shapes = [(8, 6, 32, 256), (64, 8, 32, 256)]
    out = {}
    out["matmul_peak"] = bench_matmul(device, mm, 5 if quick else 20)
    peak = out["matmul_peak"]
    for name, fn, args in (("encode", bench_encode, (n, seq, batch, reps, peak)),
                           ("cross_encoder_score", bench_cross, (n, seq, batch, reps, peak)),
                           ("train_step", bench_train, (shapes, 2 if quick else 5, peak))):
        t0 = time.perf_counter()
        try:
            out[name] = fn(device, tmp, quick, *args)
        except Exception as e:  # noqa: BLE001
            out[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=6)[-2000:]}
        out[name]["bench_seconds"] = round(time.perf_counter() - t0, 2)
    return out


def _fmt(x) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def print_report(res: dict) -> None:
    print(f"\n== cuda_check on {res['device']} ({res['gpu'] or res['cpu']}), torch {res['torch']}, "
          f"transformers {res['transformers']}")
    print(f"{'check':<22}{'result':<8}numbers")
    for c in res["checks"]:
        nums = {k: v for k, v in c.items() if k not in ("name", "passed", "traceback", "describe")}
        print(f"{c['name']:<22}{'PASS' if c['passed'] else 'FAIL':<8}"
              f"{json.dumps(nums, default=_fmt)[:600]}")
        if not c["passed"] and "traceback" in c:
            print(c["traceback"])
    b = res.get("bench") or {}
    if b:
        pk = b["matmul_peak"]
        print(f"\nmatmul {pk['n']}^3: bf16 {pk['bf16_tflops']:.1f} TFLOP/s, fp32 {pk['fp32_tflops']:.1f} TFLOP/s "
              f"(tf32 allowed: {pk['tf32_matmul_allowed']})")
        print(f"{'throughput':<44}{'fp32':>22}{'bf16':>22}{'bf16 x':>8}")
        for name, unit in (("encode", "tokens_per_s"), ("cross_encoder_score", "tokens_per_s")):
            r = b[name]
            if "error" in r:
                print(f"{name}: ERROR {r['error']}")
                continue
            cells = [f"{r[p][unit]:.3g} tok/s {100 * r[p]['share_of_peak']:.0f}%" for p in ("fp32", "bf16")]
            print(f"{name + ' ' + str(r.get('texts', r.get('pairs'))) + 'x' + str(r['seq_len']):<44}"
                  f"{cells[0]:>22}{cells[1]:>22}{r['bf16_speedup']:>8.2f}")
        if "encode_end_to_end_bf16" in b.get("encode", {}):
            e = b["encode"]["encode_end_to_end_bf16"]
            print(f"{'DualEncoder.encode end to end (bf16)':<44}{'':>22}{e['tokens_per_s']:>16.3g} tok/s")
        tr = b["train_step"]
        if "error" in tr:
            print(f"train_step: ERROR {tr['error']}")
        else:
            for key, r in tr.items():
                if key == "bench_seconds":
                    continue
                cells = [f"{r[p]['ms_per_step']:.1f} ms {100 * r[p]['share_of_peak']:.0f}%" for p in ("fp32", "bf16")]
                print(f"{'train step ' + key:<44}{cells[0]:>22}{cells[1]:>22}{r['bf16_speedup']:>8.2f}")
    print(f"\nchecks passed: {sum(c['passed'] for c in res['checks'])}/{len(res['checks'])}; "
          f"total {res['seconds']:.1f} s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    ap.add_argument("--quick", action="store_true", help="small sizes (CPU, tests)")
    ap.add_argument("--no-bench", action="store_true", help="correctness checks only")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "cuda_check.json"))
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device visible to torch", file=sys.stderr)
        return 2
    import transformers

    from distill.precision import cpu_model

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()

    t0 = time.perf_counter()
    res = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "device": args.device,
           "quick": args.quick, "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
           "cpu": cpu_model(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "transformers": transformers.__version__, "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        res["checks"] = run_checks(args.device, Path(tmp))
        print(json.dumps({c["name"]: c["passed"] for c in res["checks"]}), flush=True)
        res["bench"] = None if args.no_bench else run_bench(args.device, Path(tmp), args.quick)
    res["all_checks_passed"] = all(c["passed"] for c in res["checks"])
    res["seconds"] = time.perf_counter() - t0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=str))
    print_report(res)
    print(f"wrote {out}")
    return 0 if res["all_checks_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
