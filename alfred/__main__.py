"""python -m alfred: the operator's command line (see alfred/cli.py)."""

import sys

from alfred.cli import main

if __name__ == "__main__":
    sys.exit(main())
