"""`python -m kthena_router` runs the router."""

import sys

from kthena_router.cli import main

sys.exit(main())
