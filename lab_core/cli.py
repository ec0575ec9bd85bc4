"""The ``syslab`` command: serve dashboards, run a lab's system, check the course, run benchmarks."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from lab_core.labs import LABS, Lab, get_lab


def _demo_parser(sub: argparse._SubParsersAction, used: str | None) -> None:
    """``syslab demo LAB``: only the lab named on the command line (``used``) is imported, for its
    own options; the others are listed by their catalogue titles, so ``syslab`` never loads every
    lab's code (and torch) to parse its arguments."""
    demo = sub.add_parser("demo", help="run a lab's real system as a service on loopback")
    labs = demo.add_subparsers(dest="lab", required=True, metavar="LAB")
    for name, lab in LABS.items():
        parser = labs.add_parser(name, help=lab.title)
        if name != used:
            continue
        module = importlib.import_module(f"lab_core.{name}.demo")
        parser.description = module.__doc__.splitlines()[0] if module.__doc__ else None
        parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
        parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
        module.add_demo_arguments(parser)
        parser.set_defaults(run=module.run_demo)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser for every subcommand; ``argv`` says which lab's demo options to load."""
    parser = argparse.ArgumentParser(prog="syslab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="Panel server: index at /, each lab's dashboard at /<lab>")
    serve.add_argument("--port", type=int, default=5006)
    serve.add_argument("--address", default="127.0.0.1")
    serve.add_argument("--lab", action="append", choices=sorted(LABS), help="serve only these labs (repeatable)")
    serve.add_argument("--prefix", default="", help="URL prefix when behind a proxy (Binder: /user/.../panel)")
    serve.add_argument(
        "--allow-websocket-origin",
        action="append",
        default=None,
        help="extra origins allowed to open the websocket (repeatable)",
    )
    serve.add_argument("--show", action="store_true", help="open a browser")
    serve.add_argument(
        "--allow-training-runs",
        action="store_true",
        help="let visitors of the training dashboard start torchrun jobs on this machine (one at a time; off by default)",
    )

    words = sys.argv[1:] if argv is None else argv
    _demo_parser(sub, words[1] if len(words) > 1 and words[0] == "demo" else None)

    check = sub.add_parser("check", help="course integrity: student notebooks current, grader catches mutants")
    check.add_argument("labs", nargs="*", metavar="LAB", help="labs to check (default: all)")
    check.add_argument("--keep", action="store_true", help="keep the temporary nbgrader course folder")
    check.add_argument(
        "--compare",
        type=int,
        default=0,
        metavar="N",
        help="also grade the first N mutants with cold kernels and require equal per-cell points",
    )
    check.add_argument(
        "--all-nbgrader",
        action="store_true",
        help="grade every submission with cold kernels (the slow path the fast one is checked against)",
    )

    grade = sub.add_parser("grade", help="grade a folder of student notebooks with nbgrader (warm kernels, sandboxed)")
    grade.add_argument("lab", metavar="LAB")
    grade.add_argument(
        "submissions",
        metavar="SUBMISSIONS_DIR",
        help="<student>.ipynb files or <student>/ folders holding the notebook",
    )
    grade.add_argument(
        "--course",
        default=None,
        metavar="DIR",
        help="new nbgrader course folder for the results (default: ./graded-<lab folder>)",
    )
    grade.add_argument(
        "--timeout", type=int, default=120, help="seconds one cell may run before it is interrupted (default 120)"
    )
    grade.add_argument(
        "--workers", type=int, default=None, help="parallel nbgrader processes (default: cores, at least 2)"
    )
    grade.add_argument(
        "--no-sandbox", action="store_true", help="let notebooks write outside their folder (trusted code only)"
    )

    bench = sub.add_parser("bench", help="run a lab's benchmarks; table on stdout, JSON in benchmarks/results/")
    bench.add_argument("lab", metavar="LAB", help="a lab, or 'course' for grading speed")
    bench.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = build_parser(argv).parse_args(argv)
    try:
        if args.command == "serve":
            # The one place lab_core reaches the dashboards: loaded by name, only for this
            # subcommand, so the systems never depend on Panel (see docs/ARCHITECTURE.md).
            serve = importlib.import_module("widgets.server").serve
            if args.allow_training_runs:
                # lab_core.training.live.ALLOW_RUNS_ENV, not imported: that would load torch for every serve.
                os.environ["SYSLAB_ALLOW_TRAINING_RUNS"] = "1"
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
            if args.compare < 0:
                raise ValueError(f"--compare takes a count of mutants >= 0, got {args.compare}")
            return check_labs(args.labs or list(LABS), keep=args.keep, fast=not args.all_nbgrader, compare=args.compare)
        if args.command == "grade":
            return _grade(args)
        if args.command == "bench":
            from lab_core.bench import run_benchmark

            # "course" is the course-wide benchmark (benchmarks/course.py): grading speed, not a lab.
            target = Lab("course", "", "", "Course speed") if args.lab == "course" else get_lab(args.lab)
            return run_benchmark(target, quick=args.quick)
    except ValueError as exc:
        print(f"syslab: error: {exc}", file=sys.stderr)
        return 2
    return 2


def _grade(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lab_core.autograde.classroom import default_workers, format_outcomes, grade_class

    lab = get_lab(args.lab)
    if not 1 <= args.timeout <= 3600:
        raise ValueError(f"--timeout is seconds per cell, 1 to 3600; got {args.timeout}")
    workers = args.workers or default_workers()
    if not 1 <= workers <= 16:
        raise ValueError(f"--workers takes 1 to 16 processes; got {workers}")
    course = Path(args.course or f"graded-{lab.folder}").resolve()
    outcomes = grade_class(
        lab, Path(args.submissions), course, timeout=args.timeout, workers=workers, sandbox=not args.no_sandbox
    )
    print(format_outcomes(outcomes))
    print(f"{len(outcomes)} notebooks; nbgrader course folder {course} (grades.csv, cells.csv, autograded/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
