"""The errors of a DFME run, in a module of their own so that the run and its distributed driver both import them."""

from __future__ import annotations

__all__ = ["StudentDivergedError"]


class StudentDivergedError(ValueError):
    """The thieved classifier's training diverged (non-finite loss or generated inputs); nothing more was queried."""
