"""Command line of the instructor kit: ``python -m tools.kit COMMAND`` (see tools/kit/__init__.py).

    python -m tools.kit student [--src notebooks] [--out build/student]
    python -m tools.kit execute [--src notebooks] [--out build/executed] [NOTEBOOK ...]
    python -m tools.kit slides  [--src build/executed] [--out build/slides]
    python -m tools.kit site    [--src build/executed] [--out build/site]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.kit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    defaults = {"student": ("notebooks", "build/student"), "execute": ("notebooks", "build/executed"),
                "slides": ("build/executed", "build/slides"), "site": ("build/executed", "build/site")}
    for name, (src, out) in defaults.items():
        p = sub.add_parser(name)
        p.add_argument("--src", type=Path, default=Path(src), help=f"notebooks to read (default {src})")
        p.add_argument("--out", type=Path, default=Path(out), help=f"folder to write (default {out})")
        if name == "execute":
            p.add_argument("notebooks", nargs="*", help="only these notebook names (default: every stale one)")
            p.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.command == "student":
        from tools.kit.student import build_student

        written = build_student(args.src, args.out)
        print(f"learner versions (no `solution` cells) of {len(written)} notebooks in {args.out}/")
    elif args.command == "execute":
        from tools.kit.execute import execute_all

        execute_all(args.src, args.out, only=args.notebooks, timeout=args.timeout)
    elif args.command == "slides":
        from tools.kit.slides import build_slides

        written = build_slides(args.src, args.out)
        print(f"{len(written)} reveal.js decks in {args.out}/ (open {args.out}/index.html; works offline)")
    else:
        from tools.kit.site import build_site

        index = build_site(args.src, args.out)
        print(f"static book in {args.out}/ (open {index}; works offline)")
    print(f"{args.command}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
