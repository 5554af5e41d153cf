"""Whether every number of a report is in the results it reports (``aamn.benchmark.numbers``):
lists each number of a Markdown file, or of one section or line range of it, that no value of
the results JSON gives at the precision shown, with its line; exits 1 when there is one::

    python tools/check_numbers.py BENCHMARKS.md --section "Where AAMN's lead comes from"
    python tools/check_numbers.py README.md --lines 60-90 --json benchmarks/results/synthetic.json
"""

import argparse
import json
import os
import sys

from aamn.benchmark.numbers import section, unmatched

RESULTS = os.path.join("benchmarks", "results", "synthetic.json")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("markdown", help="the report (a Markdown file)")
    parser.add_argument(
        "--json",
        default=RESULTS,
        help=f"the results it reports (default: {RESULTS}, from the working folder)",
    )
    parser.add_argument(
        "--section", default=None, help="the heading the checked section starts with"
    )
    parser.add_argument("--lines", default=None, metavar="A-B", help="the checked lines (1-based)")
    parser.add_argument(
        "--min-integer", type=int, default=10, help="integers below it (counts) are not checked"
    )
    args = parser.parse_args(argv)
    lines = None
    if args.lines:
        try:
            a, b = (int(x) for x in args.lines.split("-"))
        except ValueError:
            parser.error(f"--lines {args.lines!r}: expected A-B, two line numbers")
        lines = (a, b)
    for path in (args.markdown, args.json):
        if not os.path.isfile(path):
            parser.error(f"no file {path}")
    with open(args.markdown, encoding="utf-8") as f:
        text = f.read()
    try:
        with open(args.json, encoding="utf-8") as f:
            results = json.load(f)
    except json.JSONDecodeError as e:
        parser.error(f"{args.json} is not JSON: {e}")
    try:
        first, part = section(text, args.section, lines)
    except ValueError as e:
        parser.error(f"{args.markdown}: {e}")
    missing = unmatched(part, results, args.min_integer)
    for n in missing:
        print(f"{args.markdown}:{first + n.line - 1}: {n.text}")
    print(f"{len(missing)} number(s) not in {args.json}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
