"""User-facing errors.

Every error a user can cause (a bad file, a bad option, missing data) is raised as a
:class:`DigitlabError` whose message names the problem: the file, the field, the limit. The CLI
prints the message and exits with status 2; the server maps each kind to its status code
(:class:`ImageTooLargeError` 413, :class:`UnsupportedImageError` 415, any other
:class:`ImageError` 422) with the message as the JSON ``detail``. Anything else that escapes is
a bug.
"""

from __future__ import annotations


class DigitlabError(Exception):
    """An error caused by input the user gave; its message is meant to be shown as it is."""


class DataError(DigitlabError):
    """MNIST or CSV data is missing, corrupt or malformed."""


class CheckpointError(DigitlabError):
    """A checkpoint or model file cannot be read or does not fit this version of digitlab."""


class ImageError(DigitlabError):
    """An image cannot be read: missing, empty, truncated or corrupt."""


class ImageTooLargeError(ImageError):
    """An image has more pixels than the limit (``core.constants.MAX_IMAGE_PIXELS``)."""


class UnsupportedImageError(ImageError):
    """Data that is not an image in one of the supported formats."""
