"""Console entry point for ``archc`` (see ``archc.cli`` for the subcommands)."""
import sys

from archc.cli import main

if __name__ == "__main__":
    sys.exit(main())
