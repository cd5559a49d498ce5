"""`carbon-aware`: the command line. Each command group lives in its own module and registers itself."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from carbon_sensors.cli import data, live, planning, report
from carbon_sensors.errors import CarbonAwareError

COMMAND_GROUPS = (data, live, planning, report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carbon-aware",
        description="Carbon-intensity data, forecasts and plans for carbon-aware pipelines.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="log progress and data-quality notes")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        code: int = args.handler(args)
    except CarbonAwareError as exc:
        print(f"carbon-aware: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `carbon-aware ... | head` closed the pipe: not an error
        sys.stderr.close()
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
