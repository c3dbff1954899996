"""Errors a user can fix: the CLI prints them as one line and exits with status 2."""


class UserError(Exception):
    """A mistake in a config, a data file, a path or a checkpoint, stated as one sentence.

    The message names the file, line or key at fault and, where it can, the fix.
    """


class Interrupted(UserError):
    """Ctrl-C during a run: it stops where it is; the message says where its last checkpoint is
    and how to resume. The CLI exits with status 130."""
