"""Domain errors of the service and the one place that maps them to HTTP status codes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..errors import InvalidParameterError, InvalidTypeError, NoActiveArmError
from .stores import ExperimentExistsError
from .stores.base import ModelMovedError, StoreUnavailableError

#: Seconds a client should wait before retrying while the store is unavailable.
RETRY_AFTER_S = 1


class ServiceError(Exception):
    """An answer other than success; ``field`` names the request field at fault, if one is."""

    status = 500

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class BadRequestError(ServiceError):
    status = 400


class NotFoundError(ServiceError):
    status = 404


class ConflictError(ServiceError):
    status = 409


class DeletedNameError(ConflictError, ExperimentExistsError):
    """A creation under the name of a deleted experiment whose log is kept: the name is taken until purged."""


class GoneError(ServiceError):
    status = 410


class TooLargeError(ServiceError):
    status = 413


class UnsupportedMediaTypeError(ServiceError):
    status = 415


class InvalidRequestError(ServiceError):
    status = 422


class UnavailableError(ServiceError):
    status = 503


#: Every error status the service answers with, and when (docs/service.md's table and the OpenAPI document's
#: descriptions both say this; a test holds them together). 422 answers list the fields at fault
#: (``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}``), every other status says what is wrong in one
#: message (``{"detail": "..."}``).
STATUSES: dict[int, str] = {
    400: "more than one Authorization header; a body that is not JSON (a syntax error, not UTF-8, empty)",
    401: "a missing, malformed or unknown bearer token (with WWW-Authenticate: Bearer)",
    403: "a client token on an admin endpoint",
    404: "an unknown experiment, decision (or a decision of another experiment) or snapshot",
    409: "an existing experiment name; a reward for an already rewarded decision with a different value; "
    "a model change that kept being overtaken; a decision request_id reused with another body; a client-made "
    "decision id logged already with another arm, unit or time; a decision for an archived experiment; "
    "a purge of an experiment that is not deleted; a name whose deleted experiment is not purged yet",
    410: "a reward after the attribution window, or after the window's default reward was applied",
    413: "a body over max_body_bytes",
    415: "a body without Content-Type: application/json",
    422: "JSON that is not a valid request: a missing or unknown field, a wrong type, NaN or infinity, "
    "a wrong context length, an unknown arm, a reward outside the policy's bounds, a batch over 1,000, "
    "a bad query parameter, a client-made decision that the experiment contradicts (arm, probabilities, "
    "propensity, a policy version from the future, a time outside the window, a malformed id)",
    503: "the store is unavailable (with Retry-After), or the Parquet export lacks pyarrow",
}


def error_body(status: int, detail: str, field: str | None) -> dict:
    """422 answers have FastAPI's shape (a list naming the field); the others a plain message."""
    if status == 422:
        return {"detail": [{"loc": ["body", field] if field else ["body"], "msg": detail, "type": "value_error"}]}
    return {"detail": detail}


class Answer(NamedTuple):
    """An error's answer: status code, JSON body and extra headers (None: none)."""

    status: int
    body: dict
    headers: Mapping[str, str] | None = None


def error_answer(error: Exception) -> Answer | None:
    """The answer to an error the service gives on purpose; None for a real failure (500).

    An ``HTTPException`` (a missing or wrong token) gets the answer FastAPI's own handler gives it on
    FastAPI's routes; there, the other kinds reach this function through :func:`install_error_handlers`.
    """
    if isinstance(error, HTTPException):
        return Answer(error.status_code, {"detail": error.detail}, error.headers)
    if isinstance(error, ServiceError):
        return Answer(error.status, error_body(error.status, error.detail, error.field))
    if isinstance(error, RequestValidationError):
        # Without the offending input: it may be NaN (not JSON) or a huge body.
        return Answer(
            422,
            {
                "detail": [
                    {"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]} for item in error.errors()
                ]
            },
        )
    if isinstance(error, ExperimentExistsError):
        return Answer(409, {"detail": f"experiment {str(error)!r} already exists"})
    if isinstance(error, StoreUnavailableError):
        return Answer(
            503,
            {"detail": f"the store is unavailable, retry in {RETRY_AFTER_S} s: {error}"},
            {"Retry-After": str(RETRY_AFTER_S)},
        )
    if isinstance(error, ModelMovedError):
        return Answer(409, {"detail": f"the model kept changing during this change, retry it: {error}"})
    if isinstance(error, NoActiveArmError):
        return Answer(409, {"detail": str(error)})
    if isinstance(error, InvalidParameterError | InvalidTypeError):
        return Answer(422, error_body(422, str(error), None))
    return None


def install_error_handlers(app: FastAPI) -> None:
    """Map domain errors (ours and the library's) to status codes, through :func:`error_answer`."""

    async def respond(request: Request, error: Exception) -> JSONResponse:
        answer = error_answer(error)
        assert answer is not None  # every kind this handler is installed for has an answer
        return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)

    for kind in (
        ServiceError,
        RequestValidationError,
        ExperimentExistsError,
        NoActiveArmError,
        InvalidParameterError,
        InvalidTypeError,
        StoreUnavailableError,
        ModelMovedError,
    ):
        app.add_exception_handler(kind, respond)
