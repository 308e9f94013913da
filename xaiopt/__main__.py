"""`python -m xaiopt` is the `xaiopt` command."""

import sys

from xaiopt.cli import main

sys.exit(main())
