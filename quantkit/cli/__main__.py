"""``python -m quantkit.cli``: the same as the ``quantkit`` console script."""

import sys

from quantkit.cli import main

sys.exit(main())
