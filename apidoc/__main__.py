"""`python -m apidoc`: write openapi.json from the code (make openapi); --check only compares."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from apidoc.document import OPENAPI_JSON, build, dumps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apidoc", description=__doc__)
    parser.add_argument("--output", type=Path, default=OPENAPI_JSON, help="where to write it (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when the file differs")
    args = parser.parse_args(argv)
    text = dumps(build())
    current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
    if args.check:
        if current != text:
            print(f"{args.output} is not what the code generates: run make openapi", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    if current != text:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        print(f"{args.output} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
