"""The plugin's own exceptions (Girder's RestException/AccessException/ValidationException cover
the rest)."""

from girder.exceptions import RestException


class ConflictException(RestException):
    """HTTP 409: the scan is locked by someone else, or its state forbids the request."""

    def __init__(self, message: str):
        super().__init__(message, code=409)
