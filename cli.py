"""Run the reuse CLI from a checkout: ``python cli.py --help``."""

from reuse.cli import main

if __name__ == "__main__":
    main()
