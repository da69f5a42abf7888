"""The one exception type that means "the user asked for something wrong" (torch-free)."""


class UserError(Exception):
    """Bad input from the user: the CLI prints the message alone (no traceback) and exits non-zero.

    The message names the problem and how to fix it.
    """
