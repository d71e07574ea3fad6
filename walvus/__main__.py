"""``python -m walvus`` is the ``walvus`` command."""

import sys

from walvus.cli import main

sys.exit(main())
