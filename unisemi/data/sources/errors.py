"""The errors a dataset source raises: one `SourceError`, with subclasses saying what kind of fault
it is, so that `data check` can group and count faults without parsing messages."""
from __future__ import annotations


class SourceError(ValueError):
    """A dataset tree or file is not what its layout promises (names the path and the expectation)."""


class UnpairedError(SourceError):
    """Images without labels or labels without images. Carries every unpaired file (the message
    names the first) and the pairs that did match, so a checker can report all and go on."""

    def __init__(self, message: str, pairs: list, unpaired: list[str]):
        super().__init__(message)
        self.pairs = pairs          # [(image, label)] that matched, sorted by key
        self.unpaired = unpaired    # one line per unpaired file, naming it and its expected partner


class UnreadableError(SourceError):
    """A file that cannot be decoded: not an image, truncated, unreachable (a symlink loop)."""


class LabelFormatError(SourceError):
    """A label image of the wrong kind (an RGB or float label where class ids were expected)."""


class LabelValueError(SourceError):
    """Label values outside the dataset's table; `values` holds them (ints, or colour triples)."""

    def __init__(self, message: str, values: list):
        super().__init__(message)
        self.values = values


class SizeMismatchError(SourceError):
    """An image and its label of different sizes."""
