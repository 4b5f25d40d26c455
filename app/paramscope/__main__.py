"""``python -m paramscope``: the same entry point as the ``paramscope`` command."""

from paramscope.cli import main

raise SystemExit(main())
