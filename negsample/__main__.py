"""``python -m negsample``: the ``negsample`` command."""

from negsample.cli import main

raise SystemExit(main())
