"""``python -m course_lib.serving --port 8000``: run the personalisation service with uvicorn on 127.0.0.1."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

DEFAULT_MODEL = "results/distilled_swesat.pt"


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options, build the app (loading the model once) and serve it until Ctrl-C."""
    import uvicorn

    from course_lib.serving.app import create_app

    ap = argparse.ArgumentParser(description="Serve the distilled chapter 10 model over HTTP (FastAPI + uvicorn).")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    ap.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    ap.add_argument("--model", default=DEFAULT_MODEL, help=f"model file (default {DEFAULT_MODEL})")
    ap.add_argument("--db", default="runs/learners.sqlite3",
                    help="SQLite file of learner state (created if missing; runs/ is git-ignored)")
    ap.add_argument("--synchronous", choices=["NORMAL", "FULL"], default="NORMAL",
                    help="SQLite durability: NORMAL survives a process crash, FULL also a power cut")
    ap.add_argument("--log-level", default="warning")
    args = ap.parse_args(argv)
    try:
        app = create_app(args.model, args.db, synchronous=args.synchronous)
    except (FileNotFoundError, ValueError) as err:
        ap.exit(2, f"error: {err}\n")
    print(f"serving {args.model} on http://{args.host}:{args.port} (learner state in {args.db}); Ctrl-C stops")
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
