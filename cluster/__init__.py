"""Cluster manifests and their checks (``python -m cluster.check``); not part of the installed package."""
