"""python -m shmcomm: see shmcomm.cli."""

from .cli import main

raise SystemExit(main())
