"""`python -m tinydistill.cli`: the `tinydistill` command."""

import sys

from tinydistill.cli import main

sys.exit(main())
