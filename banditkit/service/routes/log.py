"""The decision log export (CSV or Parquet), ready for offline evaluation."""

from __future__ import annotations

import itertools
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from .. import export
from ..deps import ClientAuth, EngineDep
from ..endpoints import error_responses, parse_query
from ..errors import UnavailableError
from ..schemas import LogQuery

router = APIRouter(prefix="/v1/experiments/{name}", tags=["log"], dependencies=[ClientAuth])


@router.get(
    "/log",
    response_class=Response,
    responses={
        200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}}},
        **error_responses([400, 401, 404, 422, 503]),
    },
)
def decision_log(name: str, engine: EngineDep, request: Request, format: Literal["csv", "parquet"] = "csv") -> Response:
    """Every decision with its propensity, probabilities, version and reward (columns in docs/service.md).

    Archived ones are included when ``archive_dir`` is set. A deleted experiment's log answers until it is
    purged. In CSV, a text cell a spreadsheet would run as a
    formula (``=1+1``) starts with ``'``; Parquet keeps every value as logged.
    """
    parse_query(LogQuery, request.scope.get("query_string", b""))  # an unknown parameter: 422, as elsewhere
    engine.logged(name)  # served, or deleted with its log kept until purged
    archive = request.app.state.settings.archive_dir
    filename = f"{name}-decisions.{format}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if format == "csv":
        chunks = export.csv_chunks(engine.store, name, archive=archive)
        # The first rows are read before the answer starts: a store that does not answer gets a 503, not a
        # 200 cut off after its status line.
        first = next(chunks)
        return StreamingResponse(itertools.chain([first], chunks), media_type="text/csv", headers=headers)
    try:
        content = export.parquet_bytes(engine.store, name, archive=archive)
    except ImportError as error:
        raise UnavailableError(str(error)) from None
    return Response(content, media_type="application/vnd.apache.parquet", headers=headers)
