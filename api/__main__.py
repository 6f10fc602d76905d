"""`python -m api <command>`: the `ledger` command without installing the package."""

import sys

from api.roles.cli import main

sys.exit(main())
