"""``python -m smhsearch``: the smhsearch command."""

import sys

from .cli import main

sys.exit(main())
