"""Shared by the tests of serve/*: one servable run directory from tiny random models (serve.testing)."""

import pytest


@pytest.fixture(scope="package")
def tiny_run(tmp_path_factory):
    """``make_serve_run``'s dict (run_dir, queries, version "unit-v1", max_length) for test_api.py and test_app.py."""
    from serve.testing import make_serve_run

    return make_serve_run(tmp_path_factory.mktemp("serve") / "run", version="unit-v1")
