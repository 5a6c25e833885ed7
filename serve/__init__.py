"""The online side: the distilled student and its FAISS index behind an HTTP API on Ray Serve.

Layout:

- :mod:`serve.snapshot`: the verified, content-addressed copy of a run's servable files
  (``<run>/snapshots/<digest>/``) that deployed replicas load; its digest is the version served.
- :mod:`serve.core`: loading a run directory or snapshot (student, index, docs, teacher) and the search
  itself; plain Python, no Ray, no HTTP.
- :mod:`serve.api`: the FastAPI app (request/response models, validation, body limit, bearer token),
  built from any backend object, so it runs under Serve, under plain uvicorn, or in a TestClient.
- :mod:`serve.app`: the Ray Serve deployments (Retriever, Reranker, ingress) and ``build_app`` for
  ``serve run configs/serve.yaml`` (import path ``serve.app:build_app``).
- ``python -m serve RUN_DIR [--rerank]``: start, block until Ctrl-C, shut down.
- :mod:`serve.client`, :mod:`serve.demo`: an httpx client and the demo ``make demo`` calls.

Nothing here imports Ray or torch at package import time.
"""
