"""Command line: ``python -m distill run CONFIG [key=value ...]`` or one stage at a time.

    python -m distill run configs/demo.yaml training.max_steps=20
    python -m distill score configs/demo.yaml            # one stage (earlier outputs must exist)
    python -m distill show-config configs/demo.yaml      # the validated config with defaults filled in
    ray-distill serve runs/demo [--rerank] [--port 8000] # serve a run (the same as python -m serve)
    ray-distill export-onnx runs/demo/student [OUT]      # the student as ONNX (python -m distill.onnx_export)
    ray-distill compare --control runs/a --treatment runs/b   # paired test over queries (distill.compare)
    ray-distill --version
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from distill import __version__, layout
from distill.manifest import STAGES

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader went away


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ray-distill", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    # listed for --help only: main() hands everything after `serve` to serve.__main__ before parsing
    sub.add_parser("serve", add_help=False, help="serve a run directory: the same as `python -m serve` "
                   "(`ray-distill serve --help` for its options)")
    sub.add_parser("export-onnx", add_help=False, help="export a transformer student to ONNX: the same as "
                   "`python -m distill.onnx_export` (needs the [onnx] extra)")
    sub.add_parser("compare", add_help=False, help="is one set of runs better than another, query by query? "
                   "(`ray-distill compare --help`)")
    for name in ["run", "show-config", *STAGES]:
        sp = sub.add_parser(name, help="run every configured stage" if name == "run" else
                            "print the validated config" if name == "show-config" else f"run the {name} stage")
        sp.add_argument("config", help="YAML run config")
        sp.add_argument("overrides", nargs="*", help="key=value overrides, e.g. training.max_steps=20")
        if name != "show-config":
            sp.add_argument("--force", action="store_true", help="re-run stages even if finished")
    return p


def main(argv: list[str] | None = None) -> int:
    """The command line; a closed stdout (``ray-distill show-config ... | head``) ends it quietly."""
    try:
        code = _main(sys.argv[1:] if argv is None else list(argv))
        sys.stdout.flush()  # a reader that went away shows here, not as a traceback at interpreter exit
        return code
    except BrokenPipeError:
        _detach_stdout()
        return EXIT_BROKEN_PIPE


def _detach_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush of what could not be written is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        from serve.__main__ import main as serve_main

        return serve_main(argv[1:], prog="ray-distill serve")
    if argv[:1] == ["export-onnx"]:
        from distill.onnx_export import main as onnx_main

        return onnx_main(argv[1:], prog="ray-distill export-onnx")
    if argv[:1] == ["compare"]:
        from distill.compare import main as compare_main

        return compare_main(argv[1:], prog="ray-distill compare")
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
        from distill.sweep import run_with_sweep

        only = None if args.command == "run" else [args.command]
        rd = run_with_sweep(cfg, only=only, force=args.force)
    except (ConfigError, DataError, RunDirError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report = rd.stage_path("evaluate") / layout.REPORT_MD
    if report.exists() and "evaluate" in (only or cfg.stages):
        print(report.read_text())
    rounds = rd.path / layout.ROUNDS_DIR / layout.REPORT_MD
    if cfg.rounds > 1 and rounds.exists() and "evaluate" in (only or cfg.stages):
        print(rounds.read_text())
    table = rd.path / layout.SWEEP_DIR / layout.SWEEP_TABLE_MD
    if only is None and (cfg.sweep.variants or cfg.sweep.seeds) and table.exists():
        print(table.read_text())
    print(f"run directory: {rd.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
