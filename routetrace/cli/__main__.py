"""``python -m routetrace.cli``: the same as the ``routetrace`` command."""

import sys

from routetrace.cli.parser import main

if __name__ == "__main__":
    sys.exit(main())
