"""The exported student: sentence-transformers files and a model card.

A transformer student is saved through sentence-transformers' own ``SentenceTransformer.save`` when the
package is installed (it is in the ``train`` and ``test`` extras), so its config files are the library's
own: ``modules.json``, ``config_sentence_transformers.json``, ``sentence_bert_config.json``,
``1_Pooling/``, ``2_Dense/`` (a projection) and ``{n}_Normalize/`` (when normalising). Without the package,
:func:`write_sentence_transformers_files` writes the same files by hand in the long-standing layout every
sentence-transformers release since 2.x loads. Either way ``SentenceTransformer(path)`` gives the
vectors ``DualEncoder.encode`` gives, and ``DualEncoder.load(path)`` reads it back.

:func:`write_model_card` writes ``README.md`` in the student directory: base model, teacher, losses and
their weights, data and query counts, the run's evaluation table (once the evaluate stage has run; it
refreshes the card), and how to load the model. A CNN/LSTM student (not a sentence-transformers model)
gets the card only.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch

from distill.atomic import write_text_atomic
from distill.metrics import metrics_table

DENSE_DIR = "2_Dense"  # distill.models.DENSE_DIR
CARD = "README.md"
# model types whose AutoModel takes add_pooling_layer (the unused pooler is not saved: distill.models)
POOLER_TYPES = ("bert", "roberta", "xlm-roberta", "electra", "mpnet")


def _st_classes():
    """(SentenceTransformer, Transformer, Pooling, Dense, Normalize), or None without sentence-transformers."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None
    try:  # sentence-transformers >= 6
        from sentence_transformers.base.modules import Dense, Normalize, Transformer
        from sentence_transformers.sentence_transformer.modules import Pooling
    except ImportError:
        from sentence_transformers.models import Dense, Normalize, Pooling, Transformer
    return SentenceTransformer, Transformer, Pooling, Dense, Normalize


def save_sentence_transformers(encoder, path: str | Path, use_library: bool | None = None) -> str:
    """Save a transformer ``DualEncoder`` at ``path`` as a sentence-transformers model; returns how:
    ``"sentence-transformers <version>"`` or ``"by hand"``. ``use_library`` None: the library when it is
    installed; False: by hand (the fallback, also for tests); True: the library or ImportError."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    encoder.backbone.save_pretrained(path, safe_serialization=True)
    encoder.tokenizer.save_pretrained(path)
    classes = None if use_library is False else _st_classes()
    if classes is None:
        if use_library:
            raise ImportError("sentence-transformers is not installed")
        write_sentence_transformers_files(encoder, path)
        return "by hand"
    import sentence_transformers

    SentenceTransformer, Transformer, Pooling, Dense, Normalize = classes
    kwargs: dict = {"max_seq_length": encoder.max_length}
    if encoder.backbone.config.model_type in POOLER_TYPES:  # loads the saved weights exactly, no random pooler
        params = inspect.signature(Transformer.__init__).parameters
        kwargs["model_kwargs" if "model_kwargs" in params else "model_args"] = {"add_pooling_layer": False}
    modules = [Transformer(str(path), **kwargs), Pooling(encoder.backbone.config.hidden_size, pooling_mode=encoder.pooling)]
    if encoder.projection is not None:
        dense = Dense(encoder.projection.in_features, encoder.projection.out_features, bias=False,
                      activation_function=torch.nn.Identity())
        with torch.no_grad():
            dense.linear.weight.copy_(encoder.projection.weight.detach().float().cpu())
        modules.append(dense)
    if encoder.normalize:
        modules.append(Normalize())
    st = SentenceTransformer(modules=modules, device="cpu")
    st.similarity_fn_name = "cosine" if encoder.normalize else "dot"  # the training score: a dot product
    save = st.save
    if "create_model_card" in inspect.signature(save).parameters:
        st.save(str(path), create_model_card=False)  # the card is ours (write_model_card)
    else:
        st.save(str(path))
    return f"sentence-transformers {sentence_transformers.__version__}"


def write_sentence_transformers_files(encoder, path: Path) -> None:
    """The sentence-transformers config files of ``encoder`` (backbone and tokenizer already in ``path``),
    written without the library, in the module layout (``sentence_transformers.models.*``) that every
    release since 2.x loads."""
    import transformers

    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    (path / "1_Pooling").mkdir(exist_ok=True)
    _write_json(path / "1_Pooling" / "config.json", {
        "word_embedding_dimension": encoder.backbone.config.hidden_size,
        "pooling_mode_cls_token": encoder.pooling == "cls",
        "pooling_mode_mean_tokens": encoder.pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "include_prompt": True,
    })
    if encoder.projection is not None:
        from safetensors.torch import save_file

        dense = path / DENSE_DIR
        dense.mkdir(exist_ok=True)
        _write_json(dense / "config.json", {
            "in_features": encoder.projection.in_features, "out_features": encoder.projection.out_features,
            "bias": False, "activation_function": "torch.nn.modules.linear.Identity"})
        save_file({"linear.weight": encoder.projection.weight.detach().float().cpu().contiguous()},
                  str(dense / "model.safetensors"))
        modules.append({"idx": 2, "name": "2", "path": DENSE_DIR, "type": "sentence_transformers.models.Dense"})
    if encoder.normalize:
        n = len(modules)
        modules.append({"idx": n, "name": str(n), "path": f"{n}_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
        (path / modules[-1]["path"]).mkdir(exist_ok=True)
        _write_json(path / modules[-1]["path"] / "config.json", {})  # Normalize's defaults
    _write_json(path / "modules.json", modules)
    _write_json(path / "sentence_bert_config.json", {"max_seq_length": encoder.max_length, "do_lower_case": False})
    _write_json(path / "config_sentence_transformers.json", {
        "__version__": {"transformers": transformers.__version__, "pytorch": torch.__version__},
        "model_type": "SentenceTransformer",
        "prompts": {},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine" if encoder.normalize else "dot",
    })


def _write_json(path: Path, payload) -> None:
    path.write_text(json.dumps(payload, indent=2))


# ---- model card -----------------------------------------------------------------------------------------
def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _is_hub_id(name: str) -> bool:
    return "/" in name and ":" not in name and not Path(name).expanduser().exists() and not name.startswith((".", "/"))


def _teacher_lines(cfg, stages: dict) -> list[str]:
    t = cfg.teacher
    if t.kind != "ensemble":
        what = f"`{t.model}`" if t.model else "(none named)"
        extra = ""
        if t.kind in ("cross-encoder", "reader"):
            extra = f", fine-tuned on the training qrels ({t.epochs} epoch(s))" if t.finetune else ", used as is"
        if t.kind == "cross-encoder":
            extra += f", {t.head} head"
        return [f"- Teacher: {t.kind} {what}{extra}; max length {t.max_length}."]
    record = (stages.get("score") or {}).get("ensemble") or {}
    weights = record.get("weights") or {m.name: m.weight for m in t.members}
    chosen = f"fitted on the {record.get('chosen_on')} split" if record.get("chosen_on") else \
        ("to be fitted on the dev split" if t.fit_weights else "fixed in the config")
    lines = [f"- Teacher: an ensemble ({t.fusion} fusion per query; weights {chosen}):", "",
             "  | member | kind | model | weight |", "  |---|---|---|---|"]
    for m in t.members:
        lines.append(f"  | {m.name} | {m.kind} | {f'`{m.model}`' if m.model else '-'} | {weights.get(m.name, m.weight):g} |")
    return lines + [""]


def _loss_lines(cfg) -> list[str]:
    tr = cfg.training
    weights = {k: v for k, v in tr.losses.model_dump().items() if v}
    out = ["- Losses (weight): " + ", ".join(f"{k} ({v:g})" for k, v in weights.items()) + "; "
           f"teacher temperature {tr.teacher_temperature}, student temperature {tr.student_temperature}"
           + (f"; embedding matching by {tr.embedding_mode}" if weights.get("embedding") else "")
           + (f"; LEAD temperature {tr.lead.temperature}, {tr.lead.pairs_per_step} layer pairs per step"
              if weights.get("lead") else "") + "."]
    out.append(f"- Training: {tr.epochs} epoch(s)" + (f", at most {tr.max_steps} steps" if tr.max_steps else "")
               + f", learning rate {tr.learning_rate}, {tr.queries_per_batch} queries x {tr.group_size} candidates "
               f"per worker step, {tr.num_workers} worker(s) ({tr.backend}), seed {tr.seed}"
               + (", asymmetric (query encoder only; the index holds the teacher's document vectors)"
                  if tr.asymmetric else "") + ".")
    return out


def _data_lines(cfg, stages: dict, data: dict | None) -> list[str]:
    d = cfg.data
    rows = (data or {}).get("rows") or {}
    counts = ", ".join(f"{k} {v}" for k, v in rows.items())
    out = [f"- Data: `{d.dir}` (BEIR layout; train split `{d.train_split}`, reported split `{d.test_split}`"
           + (f", {d.dev_queries} train queries held out as `dev`" if d.dev_queries else "") + ")"
           + (f"; rows read: {counts}." if counts else ".")]
    gen = (stages.get("mine") or {}).get("query_generation")
    train = (stages.get("train") or {}).get("counts") or {}
    if gen or train:
        parts = []
        if gen:
            parts.append(f"{gen.get('kept', 0)} generated queries kept")
        if train.get("groups") is not None:
            parts.append(f"{train['groups']} training queries (groups of candidates the teacher scored)")
        if train.get("labels_withheld"):
            parts.append(f"labels withheld from {train['labels_withheld']}")
        if train.get("steps") is not None:
            parts.append(f"{train['steps']} steps")
        out.append("- Training queries: " + ", ".join(parts) + ".")
    return out


def _eval_lines(report: dict | None) -> list[str]:
    if not report or not report.get("metrics"):
        return ["Not evaluated yet: the evaluate stage of the run (`ray-distill evaluate CONFIG`) fills this in."]
    metrics = list(dict.fromkeys(k for m in report["metrics"].values() for k in m))
    lines = [f"Split `{report.get('split')}` ({report.get('queries')} queries) of the run's data; "
             "`student_distilled` is this model.", "",
             *metrics_table(report["metrics"].items(), metrics=metrics, fmt=_fmt)]
    sizes = report.get("sizes") or {}
    if sizes.get("student_parameters"):
        lines += ["", f"Parameters: student {sizes['student_parameters']:,}, teacher {sizes.get('teacher_parameters', 0):,}."]
    lat = (report.get("speed") or {}).get("student_query_latency_ms")
    if lat is not None:
        lines.append(f"One query on its own: {lat:.1f} ms (median, on the machine that ran the evaluation).")
    return lines


def render_model_card(cfg, stages: dict, data: dict | None, report: dict | None, sentence_transformers: bool,
                      round_: int = 1) -> str:
    """The card's Markdown (see :func:`write_model_card`): ``stages`` are the round's manifest entries, ``data``
    the manifest's ``data`` entry (row counts), ``report`` the evaluate stage's report or None."""
    from distill import __version__

    s = cfg.student
    arch = "transformer" if s.arch == "transformer" else f"{s.arch.upper()} over the base model's token embeddings"
    shape = [f"{s.num_layers} layer(s) ({s.init})" if s.num_layers and s.arch == "transformer" else None,
             f"{s.pooling} pooling", "L2-normalised" if s.normalize else "not normalised",
             f"output dim {s.output_dim}" if s.output_dim else None, f"max length {s.max_length}"]
    tags = ["ray-distill", "distillation", "dense-retrieval"]
    front = ["---"]
    if sentence_transformers:
        front += ["library_name: sentence-transformers", "pipeline_tag: sentence-similarity"]
        tags = ["sentence-transformers", "feature-extraction", "sentence-similarity"] + tags
    if _is_hub_id(s.model):
        front.append(f"base_model: {s.model}")
    front += ["tags:"] + [f"- {t}" for t in tags] + ["---", ""]
    title = f"# `{cfg.name}` student" + (f" (round {round_})" if round_ > 1 else "")
    lines = front + [title, "", f"A dual encoder (one tower for queries and passages) distilled from a retrieval "
                     f"teacher by ray-distill {__version__}.", "", "## How it was made", "",
                     f"- Base model: `{s.model}` ({arch}; " + ", ".join(x for x in shape if x) + ")."]
    lines += _teacher_lines(cfg, stages) + _loss_lines(cfg) + _data_lines(cfg, stages, data)
    lines += ["", "## Evaluation", ""] + _eval_lines(report) + ["", "## How to load it", ""]
    if sentence_transformers:
        lines += ["```python", "from sentence_transformers import SentenceTransformer", "",
                  "model = SentenceTransformer(\"path/to/this/directory\")",
                  "vectors = model.encode([\"a query\", \"a passage\"])  # "
                  + ("unit length: cosine = dot product" if s.normalize else "score by dot product"), "```", "",
                  "`transformers.AutoModel` loads the backbone alone; ray-distill's `DualEncoder.load(path)` and "
                  "`ray-distill serve RUN_DIR` use the whole model."]
    else:
        lines += [f"A {s.arch.upper()} student is not a sentence-transformers model: load it with ray-distill.", "",
                  "```python", "from distill.models import DualEncoder", "",
                  "model = DualEncoder.load(\"path/to/this/directory\")",
                  "vectors = model.encode([\"a query\", \"a passage\"])", "```"]
    return "\n".join(lines) + "\n"


def write_model_card(rd, student_dir: str | Path | None = None, report: dict | None = None) -> Path:
    """Write ``README.md`` in ``student_dir`` (default: the run's student directory) from ``rd``'s config
    and manifest; ``report`` is the evaluate stage's report (default: the run's ``eval/report.json`` when
    the evaluate stage is finished, else none). Written to a temporary file and renamed into place."""
    student = Path(student_dir) if student_dir is not None else rd.stage_path("train")
    if report is None and rd.is_done("evaluate"):
        path = rd.stage_path("evaluate") / "report.json"
        if path.exists():
            report = json.loads(path.read_text())
    is_st = (student / "modules.json").exists()
    text = render_model_card(rd.config, rd.stages, rd.manifest.get("data"), report, is_st, getattr(rd, "round", 1))
    return write_text_atomic(student / CARD, text)
