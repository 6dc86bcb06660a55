"""A module that fails while it is imported, for the tests of ``--trust-module``."""

raise RuntimeError("this module cannot be imported (on purpose)")
