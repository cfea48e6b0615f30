"""The ``quantkit`` command line: ``convert``, ``calibrate``, ``debug``, ``inspect``, ``compare``,
``bench``.

    quantkit convert model.keras --mode int8 --calibration calib.npz -o model_int8.tflite
    quantkit calibrate model.keras --calibration calib.npz -o stats.json [--runner R ...]
    quantkit convert model.keras --calibration-stats stats.json -o model_int8.tflite
    quantkit debug model.keras --calibration calib.npz --data test.npz --plot errors.png
    quantkit inspect model_int8.tflite
    quantkit compare model_float32.tflite model_int8.tflite --data calib.npz
    quantkit bench model.keras --calibration calib.npz --data test.npz --labels labels.npy

Every user error (a missing, unreadable or corrupt file, an unknown mode, calibration data
that does not fit the model, a conversion or calibration error) prints one line
``quantkit: error: <message>`` naming the file on stderr and exits with 1 (2 for a malformed
command line), leaving no output file behind. An error quantkit did not foresee is one line
too (``--traceback`` shows where it came from). ``main`` returns the exit code (the console
script exits with it).

TensorFlow starts only for the commands that need it (``convert``), so ``--help``,
``--version`` and ``inspect`` start in a fraction of a second.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from quantkit.cli._data import CliError, one_line

PROG = "quantkit"
# The arguments that name a user's file, in the order an error is attributed to them.
_FILE_ARGS = ("model", "reference", "candidate", "calibration", "calibration_stats", "data",
              "output")


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit code 2 (without argparse's usage block)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{PROG}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from quantkit.cli import bench, calibrate, compare, convert, debug, inspect

    parser = _Parser(prog=PROG, description="quantkit: post-training quantization of "
                     "TensorFlow models to TFLite.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--traceback", action="store_true",
                        help="on an unexpected error, show Python's traceback")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in (convert, calibrate, debug, inspect, compare, bench):
        module.add_parser(sub)
    return parser


def _files(args: argparse.Namespace) -> list[str]:
    return [str(v) for v in (getattr(args, name, None) for name in _FILE_ARGS) if v]


def error_message(args: argparse.Namespace, error: BaseException) -> str:
    """One line naming the file: the CLI's own errors already do; another error gets the
    command's first file in front unless it names one of its files."""
    message = one_line(error)
    files = _files(args)
    if isinstance(error, CliError) or not files or any(f in message for f in files):
        return message
    return f"{files[0]}: {message}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit code (0 success, 1 user error, 2 command-line error)."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and not getattr(args, "pass_through", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:  # --help, or a usage error already printed
        return int(e.code or 0)
    args.passed_through = extra  # a command's options for another tool (calibrate: Beam's)
    if args.version:
        from quantkit._version import __version__

        print(f"{PROG} {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except (CliError, ValueError, OSError) as e:
        # ValueError: the reader's MalformedModelError, ConversionError, CalibrationError,
        # and TF's own for invalid settings
        print(f"{PROG}: error: {error_message(args, e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug or a case nobody foresaw: still one line, naming the file
        if args.traceback:
            raise
        print(f"{PROG}: error: {error_message(args, e)} (unexpected {type(e).__name__}; "
              f"--traceback shows where)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
