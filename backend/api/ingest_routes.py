"""POST /v1/ingest/batches: device stream batches into the raw zone.

The answer comes only after the batch is committed: a 201 (or a 200 for a batch id seen
before) means the data is durable. A 5xx or no answer means "not accepted: send it
again", and resending is safe because the client's batch id makes landing idempotent.
A 4xx is final: what the platform cannot store (NUL in a text, a value that is not a
finite number, an implausible time, a unit no measure has) is refused here, naming the
field, so the refiner never holds a batch it cannot refine; a source may write only for
the members it is enrolled for (403); a batch id reused for other content is a 409."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Request, Response, status
from pydantic import BaseModel, ValidationError

from backend.api.deps import IngestSource, State
from backend.ingest.formats.device_batch import DOOR, DeviceBatch
from backend.ingest.landing import BatchConflict, NotEnrolled, land_bytes, may_write
from backend.refine.units import readable

router = APIRouter(prefix="/v1/ingest", tags=["ingestion"])


class BatchReceipt(BaseModel):
    batch_id: uuid.UUID
    client_batch_id: str
    samples: int
    bytes: int
    replayed: bool


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorBody(BaseModel):
    detail: list[ErrorDetail]


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"batch is {int(declared):,} bytes; the limit is {limit:,}",
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE, f"batch exceeds the limit of {limit:,} bytes"
            )
    return bytes(body)


def _check_units(batch: DeviceBatch) -> None:
    """Units no measure could be converted from (unparseable, or overflowing like
    `10*999/min`) are refused; a real unit of the wrong kind is the refiner's to quarantine."""
    bad: dict[str, str] = {}
    for unit in {s.unit for s in batch.samples}:
        if (err := readable(unit)) is not None:
            bad[unit] = str(err)
    if bad:
        detail = [
            {"loc": ["body", "samples", i, "unit"], "msg": bad[s.unit], "type": "unit_unknown"}
            for i, s in enumerate(batch.samples)
            if s.unit in bad
        ][:100]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)


@router.post(
    "/batches",
    status_code=status.HTTP_201_CREATED,
    response_model=BatchReceipt,
    responses={
        200: {"model": BatchReceipt, "description": "this batch id was landed before"},
        401: {"description": "missing, invalid or revoked API key"},
        403: {"description": "the source is not enrolled for this member"},
        409: {"description": "this batch id was landed before with other content"},
        413: {"description": "batch too large"},
        415: {"description": "not application/json"},
        422: {"model": ValidationErrorBody, "description": "malformed batch"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": DeviceBatch.model_json_schema(
                        ref_template="#/components/schemas/{model}"
                    )
                }
            },
        }
    },
)
async def post_batch(
    request: Request,
    response: Response,
    state: State,
    source: IngestSource,
    content_type: Annotated[str | None, Header()] = None,
) -> BatchReceipt:
    if content_type is None or content_type.split(";")[0].strip() != "application/json":
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send the batch as application/json"
        )
    body = await _read_limited(request, state.max_batch_bytes)
    try:
        batch = DeviceBatch.model_validate_json(body, context=DOOR)
    except ValidationError as e:
        detail = [
            {"loc": ["body", *e_["loc"]], "msg": e_["msg"], "type": e_["type"]}
            for e_ in e.errors(include_url=False, include_input=False)
        ]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail) from None

    def land() -> BatchReceipt:
        _check_units(batch)
        with state.ingest_pool.connection() as conn:
            if not may_write(conn, source.source, batch.member_id):
                # The same answer for an unknown member id: a key must not learn which
                # member ids exist.
                raise HTTPException(
                    status.HTTP_403_FORBIDDEN,
                    "member_id: this source is not enrolled for this member"
                    " (`rejuve sources enrol`)",
                )
            receipt = land_bytes(
                conn,
                state.keys,
                body=body,
                source=source.source,
                fmt="device-batch",
                member_id=batch.member_id,
                region=state.region,
                client_batch_id=batch.batch_id,
            )
        return BatchReceipt(
            batch_id=receipt.batch_id,
            client_batch_id=batch.batch_id,
            samples=len(batch.samples),
            bytes=receipt.bytes,
            replayed=receipt.replayed,
        )

    from starlette.concurrency import run_in_threadpool

    try:
        receipt = await run_in_threadpool(land)
    except BatchConflict as e:
        raise HTTPException(status.HTTP_409_CONFLICT, f"batch_id: {e}") from None
    except NotEnrolled as e:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"{e.field}: {e}") from None
    if receipt.replayed:
        response.status_code = status.HTTP_200_OK
    return receipt
