"""The ``quantkit`` command line: ``convert``, ``inspect``, ``compare`` and ``bench``.

    quantkit convert model.keras --mode int8 --calibration calib.npz -o model_int8.tflite
    quantkit inspect model_int8.tflite
    quantkit compare model_float32.tflite model_int8.tflite --data calib.npz
    quantkit bench model.keras --calibration calib.npz --data test.npz --labels labels.npy

Every user error (a missing or unreadable file, an unknown mode, calibration data that does
not fit the model, a conversion or calibration error) prints one line
``quantkit: error: <message>`` on stderr and exits with 1 (2 for a malformed command line),
leaving no output file behind. ``main`` returns the exit code (the console script exits
with it).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from calibration import CalibrationError
from quantkit.cli._data import CliError, one_line

PROG = "quantkit"


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit code 2 (without argparse's usage block)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{PROG}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from quantkit.cli import bench, compare, convert, inspect

    parser = _Parser(prog=PROG, description="quantkit: post-training quantization of "
                     "TensorFlow models to TFLite.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in (convert, inspect, compare, bench):
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit code (0 success, 1 user error, 2 command-line error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed
        return int(e.code or 0)
    if args.version:
        from quantkit._version import __version__

        print(f"{PROG} {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    logging.getLogger("absl").setLevel(logging.ERROR)  # tfds' warnings about its folders
    try:
        import tensorflow as tf

        tf.get_logger().setLevel(logging.ERROR)
        return args.run(args)
    except (CliError, CalibrationError, ValueError, OSError) as e:
        # ValueError: quantkit's ConversionError, and TF's own for invalid settings
        print(f"{PROG}: error: {one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
