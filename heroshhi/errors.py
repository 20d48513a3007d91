"""Domain errors: raised by services, turned into the API envelope in one place.

Each carries a stable machine code that clients can branch on. Services raise them
without knowing whether a DRF view, an HTML view, the admin or a task called them.
"""


class DomainError(Exception):
    status_code = 400
    code = "BAD_REQUEST"
    default_message = "The request could not be completed."

    def __init__(self, message: str | None = None, *, errors: dict | None = None):
        self.message = message or self.default_message
        self.errors = errors
        super().__init__(self.message)


class ValidationFailed(DomainError):
    code = "VALIDATION_ERROR"
    default_message = "Some fields are invalid."


class InvalidCredentials(DomainError):
    status_code = 401
    code = "INVALID_CREDENTIALS"
    default_message = "Invalid email or password."


class InvalidToken(DomainError):
    status_code = 400
    code = "TOKEN_INVALID"
    default_message = "The token is invalid or has expired."


class InvalidTwoFactorCode(DomainError):
    status_code = 401
    code = "INVALID_2FA_CODE"
    default_message = "The authentication code is invalid."


class PermissionDenied(DomainError):
    status_code = 403
    code = "PERMISSION_DENIED"
    default_message = "You do not have permission to do this."


class NotFound(DomainError):
    status_code = 404
    code = "NOT_FOUND"
    default_message = "Not found."
