"""reuse.text: the first line of an exception's message, as every error message quotes one."""

from __future__ import annotations

import pytest

from reuse.text import first_line


@pytest.mark.parametrize(("exc", "plain", "named"), [
    (ValueError("bad value"), "bad value", "ValueError: bad value"),
    (ValueError("Exception encountered when calling Dense.call().\n\nmore\nlines"),
     "Exception encountered when calling Dense.call().",
     "ValueError: Exception encountered when calling Dense.call()."),
    (ValueError("\n  indented first line  \nsecond"), "indented first line",
     "ValueError: indented first line"),
    (RuntimeError(""), "RuntimeError", "RuntimeError"),
    (KeyError(), "KeyError", "KeyError"),
    (OSError("   \n  "), "OSError", "OSError"),
])
def test_first_line(exc, plain, named):
    assert first_line(exc) == plain
    assert first_line(exc, named=True) == named
