"""The toolkit's error hierarchy.

Every error a user can cause with bad input derives from `ForensicsError` and says
where the problem is (file, field or position) and what was expected, so the CLI can
print one clear line instead of a traceback.
"""

from __future__ import annotations


class ForensicsError(Exception):
    """Base class for every error the toolkit raises on purpose."""


class FormatError(ForensicsError):
    """A transcript file could not be read in the format it claims (or was detected) to be.

    `source` names the file (or "<string>"), `location` points inside it (a JSON
    path such as ``messages[3].content[0].type`` or ``line 12``), and the message says
    what was expected there.
    """

    def __init__(self, message: str, *, source: str = "<input>", location: str = "") -> None:
        self.source = source
        self.location = location
        self.detail = message
        where = f"{source}" + (f" at {location}" if location else "")
        super().__init__(f"{where}: {message}")


class ExportError(ForensicsError):
    """A transcript holds something the target format cannot express."""


class IncidentError(ForensicsError):
    """An incident file is missing a field or holds a value of the wrong shape."""


class TranscriptError(ForensicsError):
    """An operation on a transcript addressed something that does not exist."""


class EditError(ForensicsError):
    """A context or environment edit matched nothing, pointed nowhere, or could not be
    applied (e.g. removing a tool the transcript already called). The message names the
    edit and what was searched, so an edit never silently does nothing."""
