"""`python -m app`: the Telltale command line."""

import sys

from app.cli import main

sys.exit(main())
