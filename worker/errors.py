"""Domain errors, each mapped once to an HTTP status in api/app.py and to a message in the CLI."""


class RerankError(Exception):
    """Base of the errors a client can cause; `field` names the input at fault, if any."""

    status_code = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(RerankError):
    status_code = 404


class Conflict(RerankError):
    """The job is in a state that does not allow the request (e.g. cancelling a finished job)."""

    status_code = 409


class InvalidInput(RerankError):
    status_code = 422
