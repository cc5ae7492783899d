"""What a CLI message says, independent of how the terminal rendered it."""

import re


def words(text: str) -> str:
    """``text`` without typer's error-box frame and line breaks, runs of whitespace made one space:
    typer wraps a message at the terminal's width (and a long path moves the breaks), so tests match
    phrases in ``words(output)``, never in the raw output."""
    return " ".join(re.sub(r"[\u2500-\u257f]", " ", text).split())
