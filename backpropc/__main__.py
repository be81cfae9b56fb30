"""`python -m backpropc`: the same command as `backpropc`."""

import sys

from .cli import main

sys.exit(main())
