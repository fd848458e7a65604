"""python -m local.braze_sandbox: run the sandbox in the foreground (see cli.py)."""

from local.braze_sandbox.cli import main

raise SystemExit(main())
