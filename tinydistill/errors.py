"""The one error type users see."""


class TinyDistillError(Exception):
    """A user-facing error; the CLI prints its one-line message and exits non-zero."""
