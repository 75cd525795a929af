"""The one error a dataset source raises."""


class SourceError(ValueError):
    """A dataset tree or file is not what its layout promises (names the path and the expectation)."""
