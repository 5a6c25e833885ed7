"""Command line: ``python -m distill run CONFIG [key=value ...]`` or one stage at a time.

    python -m distill run configs/demo.yaml training.max_steps=20
    python -m distill score configs/demo.yaml            # one stage (earlier outputs must exist)
    python -m distill show-config configs/demo.yaml      # the validated config with defaults filled in
"""

from __future__ import annotations

import argparse
import json
import sys

from distill.manifest import STAGES


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ray-distill", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ["run", "show-config", *STAGES]:
        sp = sub.add_parser(name, help="run every configured stage" if name == "run" else
                            "print the validated config" if name == "show-config" else f"run the {name} stage")
        sp.add_argument("config", help="YAML run config")
        sp.add_argument("overrides", nargs="*", help="key=value overrides, e.g. training.max_steps=20")
        if name != "show-config":
            sp.add_argument("--force", action="store_true", help="re-run stages even if finished")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from distill.config import ConfigError, load_config
    from distill.data import DataError
    from distill.manifest import RunDirError

    try:
        cfg = load_config(args.config, args.overrides)
        if cfg.sweep.variants or cfg.sweep.seeds:  # every variant's config must be valid before anything runs
            from distill.sweep import plan

            plan(cfg)
        if args.command == "show-config":
            print(json.dumps(cfg.model_dump(mode="json"), indent=2))
            return 0
        from distill.pipeline import run_pipeline

        only = None if args.command == "run" else [args.command]
        rd = run_pipeline(cfg, only=only, force=args.force)
    except (ConfigError, DataError, RunDirError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report = rd.path / "eval" / "report.md"
    if report.exists() and "evaluate" in (only or cfg.stages):
        print(report.read_text())
    rounds = rd.path / "rounds" / "report.md"
    if cfg.rounds > 1 and rounds.exists() and "evaluate" in (only or cfg.stages):
        print(rounds.read_text())
    table = rd.path / "sweep" / "table.md"
    if only is None and (cfg.sweep.variants or cfg.sweep.seeds) and table.exists():
        print(table.read_text())
    print(f"run directory: {rd.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
