"""The one exception type that reaches the user as a message instead of a traceback."""


class UserError(Exception):
    """A problem the user can fix (bad name, missing file, bad shape, no network, checksum).

    The message must say what went wrong *and* what to do. The CLI prints it on one line
    prefixed with ``error:`` and exits with status 2.
    """
