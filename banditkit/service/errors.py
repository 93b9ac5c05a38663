"""Domain errors of the service and the one place that maps them to HTTP status codes."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ..errors import InvalidParameterError, InvalidTypeError, NoActiveArmError
from .stores import ExperimentExistsError


class ServiceError(Exception):
    """An answer other than success; ``field`` names the request field at fault, if one is."""

    status = 500

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class NotFoundError(ServiceError):
    status = 404


class ConflictError(ServiceError):
    status = 409


class GoneError(ServiceError):
    status = 410


class InvalidRequestError(ServiceError):
    status = 422


class UnavailableError(ServiceError):
    status = 503


def error_body(status: int, detail: str, field: str | None) -> dict:
    """422 answers have FastAPI's shape (a list naming the field); the others a plain message."""
    if status == 422:
        return {"detail": [{"loc": ["body", field] if field else ["body"], "msg": detail, "type": "value_error"}]}
    return {"detail": detail}


def install_error_handlers(app: FastAPI) -> None:
    """Map domain errors (ours and the library's) to status codes."""

    async def service_error(request: Request, error: ServiceError) -> JSONResponse:
        return JSONResponse(error_body(error.status, error.detail, error.field), status_code=error.status)

    async def invalid(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse(error_body(422, str(error), None), status_code=422)

    async def validation(request: Request, error: RequestValidationError) -> JSONResponse:
        # Without the offending input: it may be NaN (not JSON) or a huge body.
        detail = [{"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]} for item in error.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    async def exists(request: Request, error: ExperimentExistsError) -> JSONResponse:
        return JSONResponse({"detail": f"experiment {str(error)!r} already exists"}, status_code=409)

    async def no_arm(request: Request, error: NoActiveArmError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=409)

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(InvalidParameterError, invalid)
    app.add_exception_handler(InvalidTypeError, invalid)
    app.add_exception_handler(ExperimentExistsError, exists)
    app.add_exception_handler(NoActiveArmError, no_arm)
