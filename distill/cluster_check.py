"""Moved to ``cluster/check.py`` (``python -m cluster.check`` from the repository root): the cluster manifest
checks are not part of the runtime package. This entry only keeps ``python -m distill.cluster_check``
(still named in README.md and configs/msmarco.yaml) working; delete it once those name the new one."""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout that holds cluster/
    from cluster.check import main

    sys.exit(main())
