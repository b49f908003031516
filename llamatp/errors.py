"""The one exception type users see: a message the CLI prints on one line."""


class LlamatpError(Exception):
    """A problem with the user's input or environment, worded for the user."""
