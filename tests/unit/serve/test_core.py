"""serve/core.py's helpers without models: snippets, document text, the rerank order, and the run
directory checks of RunArtifacts (the models behind Retrieval and Reranking: test_api.py's local backend)."""

from __future__ import annotations

import pytest

from serve.core import RunArtifacts, ServeSetupError, doc_text, rerank_order, snippet


def test_snippet_and_doc_text():
    assert snippet(None) is None
    assert snippet("short  text\n here") == "short text here"
    long = " ".join(["word"] * 100)
    s = snippet(long, 50)
    assert s.endswith("...") and len(s) <= 53 and not s[:-3].endswith(" ")
    assert doc_text("Title", "body") == "Title. body" and doc_text("", "body") == "body"
    assert rerank_order([0.1, 0.5, 0.5, -1]) == [1, 2, 0, 3]


def test_doc_text_is_the_pipelines_and_pulls_in_nothing_heavy():
    """One composition of a document's text (distill.data.doc_text) for the student, the teacher and
    serving; importing serve.core loads neither a model library nor Ray (serve nodes: the base install)."""
    import subprocess
    import sys

    import distill.data
    import serve.core

    assert serve.core.doc_text is distill.data.doc_text
    heavy = ("torch", "transformers", "deepspeed", "ray", "faiss", "sentence_transformers", "ranx", "matplotlib")
    code = ("import sys, serve.core; print(sorted({m.split('.')[0] for m in sys.modules} & set(%r)))" % (heavy,))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_run_artifacts_errors(tmp_path):
    with pytest.raises(ServeSetupError, match="does not exist"):
        RunArtifacts.load(tmp_path / "missing")
    with pytest.raises(ServeSetupError, match="student"):
        RunArtifacts.load(tmp_path)
    (tmp_path / "student").mkdir()
    (tmp_path / "student" / "config.json").write_text("{}")
    with pytest.raises(ServeSetupError, match="index"):
        RunArtifacts.load(tmp_path)

