"""``python -m quantkit.bench DIR/results.json``: re-render results.md and the plot beside a
results.json (no measuring), e.g. after changing the plot."""

from __future__ import annotations

import argparse
import json
import os

from quantkit.bench.report import from_json, write_all


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", help="a results.json written by a benchmark")
    args = parser.parse_args(argv)
    with open(args.json) as f:
        result = from_json(json.load(f))
    write_all(result, os.path.dirname(os.path.abspath(args.json)))


if __name__ == "__main__":
    main()
