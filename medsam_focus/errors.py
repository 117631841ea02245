"""The one exception type for problems a user can cause and fix.

Every error a user can trigger (a bad path, a box outside the image, an empty mask, a
checkpoint that does not fit the chosen model, an unknown name) raises
:class:`MedsamFocusError` with a message that names the file or value and says what to do.
The command line prints the message without a traceback and exits with status 2.
"""

from __future__ import annotations


class MedsamFocusError(Exception):
    """A problem with the user's input, files or configuration, explained in the message."""
