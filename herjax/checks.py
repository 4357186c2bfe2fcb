"""One-line config errors, shared by every config section (they validate themselves with these), and the ``--help``
of the command-line tools."""

from __future__ import annotations

import difflib
from typing import Any, Sequence


class ConfigError(ValueError):
    """A bad key or value; the message is one line that names it and the valid choices."""


def help_requested(argv: Sequence[str], doc: str) -> bool:
    """Whether ``argv`` asks for help (``-h`` or ``--help``); if so, prints the first three paragraphs of ``doc`` (a
    tool's module docstring: what it does, and its usage)."""
    if not any(a in ("-h", "--help") for a in argv):
        return False
    print("\n\n".join(doc.split("\n\n")[:3]))
    return True


def suggest(word: str, choices: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for a close match among ``choices``, else ``''``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def choice(name: str, value: Any, choices: Sequence[str]) -> None:
    """Raises ``ConfigError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"bad value {value!r} for {name}{suggest(str(value), choices)}; valid: {', '.join(choices)}")


def check(ok: bool, name: str, value: Any, rule: str) -> None:
    """Raises ``ConfigError`` ``bad value V for NAME: must be RULE`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"bad value {value!r} for {name}: must be {rule}")


def positive(prefix: str, section: Any, names: Sequence[str]) -> None:
    """Each field ``names`` of ``section`` must be ``> 0``."""
    for name in names:
        check(getattr(section, name) > 0, f"{prefix}{name}", getattr(section, name), "> 0")


def unit_interval(prefix: str, section: Any, names: Sequence[str]) -> None:
    """Each field ``names`` of ``section`` must lie in ``[0, 1]``."""
    for name in names:
        value = getattr(section, name)
        check(0.0 <= value <= 1.0, f"{prefix}{name}", value, "in [0, 1]")
