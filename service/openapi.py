"""The OpenAPI schema as this server answers: the configured limits written into the request schemas, and the one
error shape (`ErrorOut`) documented for every error status of every operation."""
from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.config import ServiceConfig
from service.schemas import ErrorOut

ERROR_STATUSES = {"400": "bad input", "401": "API key missing", "403": "wrong API key or path outside the media root",
                  "404": "no such video, job or file", "408": "the request body did not arrive in time",
                  "409": "the file is already a video of the library", "413": "body, upload or video too large",
                  "415": "a still image where a video is needed, or a body of another type",
                  "422": "invalid request", "500": "internal error", "503": "overloaded: retry shortly"}


def install(app: FastAPI, config: ServiceConfig) -> None:
    def schema() -> dict:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            _limits(doc, config)
            _errors(doc)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = schema


def _limits(doc: dict, config: ServiceConfig) -> None:
    schemas = doc.get("components", {}).get("schemas", {})
    for name in ("SearchOptions", "SearchRequest"):
        props = schemas.get(name, {}).get("properties", {})
        if "k" in props:
            props["k"]["maximum"] = config.max_k
        if "moments_per_video" in props:
            props["moments_per_video"]["maximum"] = config.max_moments_per_video
        for text in ("query", "then"):
            for option in props.get(text, {}).get("anyOf", []):
                if option.get("type") == "string":
                    option["maxLength"] = config.max_query_chars
    for path, item in doc.get("paths", {}).items():
        for operation in item.values():
            for param in operation.get("parameters", []):
                if param["name"] == "k":
                    param["schema"]["maximum"] = config.max_k
            if "requestBody" in operation and "multipart/form-data" in operation["requestBody"].get("content", {}):
                operation["description"] = (operation.get("description") or "") + \
                    f"\n\nUploads are limited to {config.max_upload_bytes} bytes, {config.max_video_seconds:.0f} s, " \
                    f"{config.max_video_frames} frames and {config.max_frame_pixels} pixels a frame; " \
                    f"{config.max_concurrent_uploads} at once on this route."


def _errors(doc: dict) -> None:
    doc.setdefault("components", {}).setdefault("schemas", {})["ErrorOut"] = ErrorOut.model_json_schema()
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}}
    for item in doc.get("paths", {}).values():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            for status, what in ERROR_STATUSES.items():
                responses[status] = {"description": what, **ref}
