"""The ``syslab`` command: serve dashboards, run a lab's system, check the course, run benchmarks."""
from __future__ import annotations

import argparse
import importlib
import sys

from lab_core.labs import LABS, get_lab


def _demo_parser(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="run a lab's real system as a service on loopback")
    labs = demo.add_subparsers(dest="lab", required=True, metavar="LAB")
    for name in LABS:
        module = importlib.import_module(f"lab_core.{name}.demo")
        parser = labs.add_parser(name, help=module.__doc__.splitlines()[0] if module.__doc__ else None)
        parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
        parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
        module.add_demo_arguments(parser)
        parser.set_defaults(run=module.run_demo)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="syslab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="Panel server: index at /, each lab's dashboard at /<lab>")
    serve.add_argument("--port", type=int, default=5006)
    serve.add_argument("--address", default="127.0.0.1")
    serve.add_argument("--lab", action="append", choices=sorted(LABS), help="serve only these labs (repeatable)")
    serve.add_argument("--prefix", default="", help="URL prefix when behind a proxy (Binder: /user/.../panel)")
    serve.add_argument("--allow-websocket-origin", action="append", default=None,
                       help="extra origins allowed to open the websocket (repeatable)")
    serve.add_argument("--show", action="store_true", help="open a browser")

    _demo_parser(sub)

    check = sub.add_parser("check", help="course integrity: student notebooks current, grader catches mutants")
    check.add_argument("labs", nargs="*", metavar="LAB", help="labs to check (default: all)")
    check.add_argument("--keep", action="store_true", help="keep the temporary nbgrader course folder")

    bench = sub.add_parser("bench", help="run a lab's benchmarks; table on stdout, JSON in benchmarks/results/")
    bench.add_argument("lab", metavar="LAB")
    bench.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            # The one place lab_core reaches the dashboards: loaded by name, only for this
            # subcommand, so the systems never depend on Panel (see docs/ARCHITECTURE.md).
            serve = importlib.import_module("widgets.server").serve
            serve(
                labs=args.lab or list(LABS),
                port=args.port,
                address=args.address,
                prefix=args.prefix,
                websocket_origins=args.allow_websocket_origin,
                show=args.show,
            )
            return 0
        if args.command == "demo":
            return int(args.run(args) or 0)
        if args.command == "check":
            from lab_core.course import check_labs

            for name in args.labs:
                get_lab(name)
            return check_labs(args.labs or list(LABS), keep=args.keep)
        if args.command == "bench":
            from lab_core.bench import run_benchmark

            return run_benchmark(get_lab(args.lab), quick=args.quick)
    except ValueError as exc:
        print(f"syslab: error: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
