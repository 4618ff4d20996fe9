"""Smithy RPC v2 CBOR for CloudWatch, the protocol the AWS SDK for Rust speaks to it.

aws-sdk-cloudwatch sends `POST /service/GraniteServiceVersion20100801/operation/<Operation>`
with `smithy-protocol: rpc-v2-cbor` and a CBOR body. Stock moto routes CloudWatch by the JSON
1.0 (`X-Amz-Target`) and query protocols only, and answers such a request with a 404 the SDK
cannot parse. This module is a translating layer in front of moto, called by emulator.py's WSGI
app for requests whose path names a service listed in SERVICES:

  1. check the request is rpcv2Cbor (POST, `smithy-protocol: rpc-v2-cbor`, no X-Amz-Target,
     CBOR or empty body; `Content-Encoding: gzip` is undone: the SDK gzips PutMetricData
     bodies of 10 KiB and more);
  2. decode the CBOR body and convert it, guided by the operation's input shape in botocore's
     service model, into the AWS JSON 1.0 document the same call would carry (timestamps:
     CBOR tag 1 -> epoch seconds; blobs -> base64), rejecting wrong CBOR types
     (SerializationException) and values that break the model's constraints: required
     members, enums, lengths, ranges (ValidationException, code ValidationError);
  3. re-dispatch that document to moto's own app as a JSON 1.0 request (same signature
     headers, so moto picks the same account and region);
  4. convert moto's JSON answer back, guided by the output shape: a CBOR map (timestamps as
     tag 1 + float64, every double as a float64 even when moto wrote an integer, since the
     Rust decoder refuses an integer where the model says double), an empty body for an
     operation with no output, or for an error a CBOR map with `__type` (the error shape's
     absolute id) and `message`, the model's status code and an `x-amzn-query-error: Code;Fault`
     header (CloudWatch is @awsQueryCompatible: the Rust SDK matches modeled errors on that
     code, e.g. `ResourceNotFound`).

Why re-dispatch as JSON rather than call moto's CloudWatch backend: moto already parses and
validates JSON 1.0 requests, runs the backend and renders the answer and its errors (status
codes, `x-amzn-query-error`) for every CloudWatch operation it implements; boto3 itself uses
that path. JSON and CBOR carry the same data model (a structure is a map keyed by member name),
so the translation is a generic, shape-driven walk with no per-operation code, and it keeps
working for operations and moto versions it was not written against. Calling the backend
directly would mean re-implementing each operation's parameter handling and response rendering.

Everything here runs inside the emulator's request lock, like the rest of the fidelity layer.
"""

from __future__ import annotations

import base64
import datetime
import gzip
import io
import json
import math
import re
import sys
import traceback
import uuid
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import botocore.session
import cbor2
from botocore.model import OperationModel, ServiceModel, Shape, StructureShape
from botocore.utils import parse_timestamp

PROTOCOL = "rpc-v2-cbor"
CBOR = "application/cbor"
# {prefix?}/service/{serviceName}/operation/{operationName}: only the last four segments count.
PATH = re.compile(r"/service/([^/]+)/operation/([^/]+)/?$")

StartResponse = Callable[..., Any]


@dataclass(frozen=True)
class Service:
    botocore_name: str  # botocore's (and moto's) name for the service
    namespace: str  # the Smithy namespace of its shapes, for absolute shape ids in `__type`


# Smithy service shape name (the `{serviceName}` path segment) -> the service. Another service
# whose botocore model lists both `smithy-rpc-v2-cbor` and `json` would need only a line here.
SERVICES = {"GraniteServiceVersion20100801": Service("cloudwatch", "com.amazonaws.cloudwatch")}

# Errors the protocol layer itself answers (absolute shape ids of AWS's generic errors).
SERIALIZATION = "com.amazon.coral.service#SerializationException"
UNKNOWN_OPERATION = "com.amazon.coral.service#UnknownOperationException"
INTERNAL_FAILURE = "com.amazon.coral.service#InternalFailure"


class CborError(Exception):
    """An error answer: `__type`, message, HTTP status, and the awsQuery code and fault."""

    def __init__(
        self,
        shape_id: str,
        message: str,
        status: int = 400,
        code: str | None = None,
        fault: str = "Sender",
        members: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.shape_id = shape_id
        self.message = message
        self.status = status
        self.code = code or shape_id.rsplit("#", 1)[-1]
        self.fault = fault
        self.members = members or {}


def serialization_error(message: str) -> CborError:
    return CborError(SERIALIZATION, message)


def match(path: str) -> tuple[str, str] | None:
    """(service shape name, operation) when `path` is an rpcv2Cbor path of a service we serve.

    As the spec asks of servers, `com.amazonaws.cloudwatch.GraniteServiceVersion20100801`
    (the absolute shape id with `#` as `.`) is accepted for the service name too.
    """
    found = PATH.search(path)
    if found is None:
        return None
    service, operation = found.groups()
    for name, svc in SERVICES.items():
        if service in (name, f"{svc.namespace}.{name}"):
            return name, operation
    return None


# -- the WSGI side ---------------------------------------------------------------------------------


class Translator:
    """Translates one rpcv2Cbor request into a JSON 1.0 call to moto's app, and back."""

    def __init__(self, moto_app: Callable[..., Iterable[bytes]]) -> None:
        self.moto_app = moto_app
        self._models: dict[str, ServiceModel] = {}

    def model(self, service: Service) -> ServiceModel:
        if service.botocore_name not in self._models:
            session = botocore.session.get_session()
            self._models[service.botocore_name] = session.get_service_model(service.botocore_name)
        return self._models[service.botocore_name]

    def __call__(
        self, environ: dict[str, Any], start_response: StartResponse, route: tuple[str, str]
    ) -> list[bytes]:
        service_name, operation_name = route
        service = SERVICES[service_name]
        model = self.model(service)
        operation: OperationModel | None = None
        try:
            operation = _operation(model, operation_name)
            document = self.decode_request(environ, operation)
            status, headers, body = self.call_moto(environ, model, operation, document)
            return self.respond(start_response, service, operation, status, headers, body)
        except CborError as err:
            return _error(start_response, err, {})
        except NotImplementedError as err:  # moto's answer to an operation it lacks
            gap = CborError(
                INTERNAL_FAILURE,
                f"not implemented by the emulator (moto): {err}",
                status=500,
                code="InternalFailure",
                fault="Receiver",
            )
            return _error(start_response, gap, {})
        except Exception as err:  # a bug here must still answer something the SDK can read
            traceback.print_exc(file=sys.stderr)
            failure = CborError(
                INTERNAL_FAILURE,
                f"the emulator's CBOR layer failed: {type(err).__name__}: {err}",
                status=500,
                code="InternalFailure",
                fault="Receiver",
            )
            return _error(start_response, failure, {})

    # -- request ------------------------------------------------------------------------------

    def decode_request(self, environ: dict[str, Any], operation: OperationModel) -> dict[str, Any]:
        if environ.get("REQUEST_METHOD") != "POST":
            raise serialization_error("rpcv2Cbor requests must use POST")
        protocol = environ.get("HTTP_SMITHY_PROTOCOL", "")
        if protocol != PROTOCOL:
            raise serialization_error(
                f"expected header smithy-protocol: {PROTOCOL}, got {protocol or 'none'}"
            )
        if environ.get("HTTP_X_AMZ_TARGET") or environ.get("HTTP_X_AMZN_TARGET"):
            raise serialization_error("rpcv2Cbor requests must not carry X-Amz-Target")
        raw = _read_body(environ)
        encoding = [
            e.strip().lower()
            for e in environ.get("HTTP_CONTENT_ENCODING", "").split(",")
            if e.strip() and e.strip().lower() != "identity"
        ]
        for coding in reversed(encoding):
            if coding != "gzip":
                raise serialization_error(f"unsupported Content-Encoding {coding}")
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError, zlib.error) as err:
                raise serialization_error(f"body is not valid gzip: {err}") from None
        content_type = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if raw and content_type != CBOR:
            raise serialization_error(
                f"expected Content-Type {CBOR} with a body, got {content_type or 'none'}"
            )
        if not raw:
            value: Any = {}  # servers accept an empty body for an empty (or absent) input
        else:
            stream = io.BytesIO(raw)
            try:
                value = cbor2.CBORDecoder(stream).decode()
            except (cbor2.CBORDecodeError, ValueError, TypeError, EOFError) as err:
                raise serialization_error(f"body is not valid CBOR: {err}") from None
            if stream.tell() != len(raw):
                raise serialization_error(
                    f"body has {len(raw) - stream.tell()} bytes after its CBOR data item"
                )
        shape = operation.input_shape
        if shape is None:
            if value not in ({}, None):
                raise serialization_error(f"{operation.name} takes no input")
            return {}
        document = cbor_to_json(shape, value, [])
        problems = validate(shape, value, [])
        if problems:
            n = len(problems)
            message = f"{n} validation error{'s' if n > 1 else ''} detected: " + "; ".join(
                problems
            )
            raise model_error(operation.service_model, "ValidationException", message)
        return document

    def call_moto(
        self,
        environ: dict[str, Any],
        model: ServiceModel,
        operation: OperationModel,
        document: dict[str, Any],
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        body = json.dumps(document).encode()
        json_version = model.metadata.get("jsonVersion", "1.0")
        inner = {
            key: value
            for key, value in environ.items()
            if key
            not in (
                "HTTP_SMITHY_PROTOCOL",
                "HTTP_CONTENT_ENCODING",
                "HTTP_ACCEPT",
                "HTTP_TRANSFER_ENCODING",
            )
        }
        inner.update(
            {
                "REQUEST_METHOD": "POST",
                "PATH_INFO": "/",
                "RAW_URI": "/",
                "REQUEST_URI": "/",
                "QUERY_STRING": "",
                "CONTENT_TYPE": f"application/x-amz-json-{json_version}",
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_ACCEPT": "application/json",
                "HTTP_X_AMZ_TARGET": f"{model.metadata['targetPrefix']}.{operation.name}",
                "wsgi.input": io.BytesIO(body),
            }
        )
        inner.pop("wsgi.input_terminated", None)
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            captured["status"] = int(status.split(" ", 1)[0])
            captured["headers"] = headers

        result = self.moto_app(inner, capture)
        try:
            out = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return captured["status"], captured["headers"], out

    # -- response -----------------------------------------------------------------------------

    def respond(
        self,
        start_response: StartResponse,
        service: Service,
        operation: OperationModel,
        status: int,
        moto_headers: list[tuple[str, str]],
        body: bytes,
    ) -> list[bytes]:
        keep = {}
        for name, value in moto_headers:
            if name.lower() in ("x-amzn-requestid", "x-amz-request-id"):
                keep["x-amzn-requestid"] = value
        try:
            document = json.loads(body) if body.strip() else {}
        except ValueError:
            document = None
        if status == 200 and isinstance(document, dict):
            shape = operation.output_shape
            if shape is None:  # no output (Unit): no body, no Content-Type
                return _answer(start_response, 200, keep, b"")
            payload = cbor2.dumps(json_to_cbor(shape, document))
            return _answer(start_response, 200, {**keep, "Content-Type": CBOR}, payload)
        if isinstance(document, dict) and status >= 400:
            query_error = next(
                (v for n, v in moto_headers if n.lower() == "x-amzn-query-error"), None
            )
            err = moto_error(operation, service, status, document, query_error)
        else:
            # Not a JSON answer: moto failed (an HTML 500) or does not implement the operation.
            text = body.decode("utf-8", "replace")
            summary = re.sub(r"<[^>]+>", " ", text)
            summary = " ".join(summary.split())[:300]
            err = CborError(
                INTERNAL_FAILURE,
                f"moto answered HTTP {status} to {operation.name}: {summary}",
                status=status if status >= 400 else 500,
                code="InternalFailure",
                fault="Receiver",
            )
        return _error(start_response, err, keep)


def _operation(model: ServiceModel, name: str) -> OperationModel:
    if name not in model.operation_names:
        raise CborError(UNKNOWN_OPERATION, f"unknown operation {name}", code="UnknownOperation")
    return model.operation_model(name)


def _read_body(environ: dict[str, Any]) -> bytes:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        try:
            n = int(length)
        except ValueError:
            raise serialization_error(f"bad Content-Length {length!r}") from None
        return stream.read(n) if n > 0 else b""
    if environ.get("wsgi.input_terminated"):  # chunked: werkzeug ends the stream for us
        return stream.read()
    return b""


def _answer(
    start_response: StartResponse, status: int, headers: dict[str, str], body: bytes
) -> list[bytes]:
    if "x-amzn-requestid" not in headers:  # moto gives one; errors found here get their own
        headers = {"x-amzn-requestid": str(uuid.uuid4()), **headers}
    out = [("smithy-protocol", PROTOCOL), *headers.items(), ("Content-Length", str(len(body)))]
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    start_response(f"{status} {phrase}", out)
    return [body]


def _error(start_response: StartResponse, err: CborError, headers: dict[str, str]) -> list[bytes]:
    payload = {"__type": err.shape_id, **err.members}
    if not any(k.lower() == "message" for k in err.members):
        payload["message"] = err.message
    return _answer(
        start_response,
        err.status,
        {
            **headers,
            "Content-Type": CBOR,
            "x-amzn-query-error": f"{err.code};{err.fault}",
        },
        cbor2.dumps(payload),
    )


# -- errors ----------------------------------------------------------------------------------------


def find_error_shape(
    model: ServiceModel, name_or_code: str, operation: OperationModel | None = None
) -> StructureShape | None:
    """The modeled error with this shape name, else with this awsQuery code.

    Several shapes can share a code (CloudWatch's DashboardNotFoundError and ResourceNotFound
    are both `ResourceNotFound`): the operation's own errors win.
    """
    shapes: list[StructureShape] = list(model.error_shapes)
    for shape in shapes:
        if shape.name == name_or_code:
            return shape
    candidates = [s for s in shapes if (s.metadata.get("error") or {}).get("code") == name_or_code]
    if operation is not None:
        own = {s.name for s in operation.error_shapes}
        for shape in candidates:
            if shape.name in own:
                return shape
    return candidates[0] if candidates else None


def model_error(
    model: ServiceModel,
    shape_name: str,
    message: str,
    members: dict[str, Any] | None = None,
    status: int | None = None,
) -> CborError:
    """A CborError for a modeled error shape: its absolute id, status code, awsQuery code."""
    service = next(s for s in SERVICES.values() if s.botocore_name == model.service_name)
    shape = find_error_shape(model, shape_name)
    if shape is None:
        return CborError(f"{service.namespace}#{shape_name}", message, status or 400)
    error = shape.metadata.get("error") or {}
    status = status or error.get("httpStatusCode") or 400
    fault = "Receiver" if not error.get("senderFault") and status >= 500 else "Sender"
    return CborError(
        f"{service.namespace}#{shape.name}",
        message,
        status,
        code=error.get("code") or shape.name,
        fault=fault,
        members=members,
    )


def moto_error(
    operation: OperationModel,
    service: Service,
    status: int,
    document: dict[str, Any],
    query_error: str | None,
) -> CborError:
    """moto's JSON 1.0 error answer as the CBOR error AWS would give."""
    model = operation.service_model
    raw_type = str(document.get("__type") or "")
    name = raw_type.rsplit("#", 1)[-1].split(":", 1)[0]
    code, _, fault = (query_error or "").partition(";")
    message = str(document.get("message") or document.get("Message") or "")
    shape = find_error_shape(model, name, operation) if name else None
    if shape is None and code:
        shape = find_error_shape(model, code, operation)
    if shape is None:
        return CborError(
            f"{service.namespace}#{name or code or 'UnknownError'}",
            message,
            status,
            code=code or name or "UnknownError",
            fault=fault or ("Receiver" if status >= 500 else "Sender"),
        )
    members = {
        key: value
        for key, value in json_to_cbor(shape, document).items()
        if key.lower() != "message"
    }
    err = model_error(model, shape.name, message, members, status)
    if code:  # moto's own awsQuery code and fault, when it gave them
        err.code = code
        err.fault = fault or err.fault
    message_member = next((m for m in shape.members if m.lower() == "message"), "message")
    err.members[message_member] = message
    return err


# -- the shape-driven walks ------------------------------------------------------------------------


def _where(path: list[str]) -> str:
    return ".".join(path) or "the input"


def cbor_to_json(shape: Shape, value: Any, path: list[str]) -> Any:
    """A decoded CBOR value of `shape` -> what AWS JSON 1.0 carries for it.

    Raises SerializationException for a CBOR value of the wrong type. Null members are
    omitted (the spec: null and CBOR `undefined` mean absent); unknown members are ignored.
    """
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise serialization_error(f"expected a map at {_where(path)}")
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise serialization_error(f"non-text key {key!r} at {_where(path)}")
            member = shape.members.get(key)
            if member is None or _absent(item):
                continue
            out[key] = cbor_to_json(member, item, [*path, key])
        return out
    if kind == "list":
        if not isinstance(value, list):
            raise serialization_error(f"expected an array at {_where(path)}")
        items = []
        for i, item in enumerate(value, 1):
            if _absent(item):
                raise serialization_error(f"null in the dense list {_where(path)}")
            items.append(cbor_to_json(shape.member, item, [*path, str(i)]))
        return items
    if kind == "map":
        if not isinstance(value, dict):
            raise serialization_error(f"expected a map at {_where(path)}")
        return {
            str(k): cbor_to_json(shape.value, v, [*path, str(k)])
            for k, v in value.items()
            if not _absent(v)
        }
    if kind == "timestamp":
        # cbor2 decodes tag 1 (epoch seconds) into an aware datetime.
        if isinstance(value, datetime.datetime):
            return value.timestamp()
        raise serialization_error(f"expected a timestamp (CBOR tag 1) at {_where(path)}")
    if kind == "blob":
        if not isinstance(value, (bytes, bytearray)):
            raise serialization_error(f"expected a byte string at {_where(path)}")
        return base64.b64encode(value).decode()
    if kind == "string":
        if not isinstance(value, str):
            raise serialization_error(f"expected a text string at {_where(path)}")
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise serialization_error(f"expected a boolean at {_where(path)}")
        return value
    if kind in ("integer", "long", "short", "byte"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise serialization_error(f"expected an integer at {_where(path)}")
        return value
    if kind in ("double", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise serialization_error(f"expected a number at {_where(path)}")
        number = float(value)
        if math.isnan(number):
            return "NaN"
        if math.isinf(number):
            return "Infinity" if number > 0 else "-Infinity"
        return number
    raise serialization_error(f"unsupported shape type {kind} at {_where(path)}")


def _absent(value: Any) -> bool:
    return value is None or value is cbor2.undefined


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def validate(shape: Shape, value: Any, path: list[str]) -> list[str]:
    """The model's constraints `value` breaks, as AWS words them (required, enum, length, range).

    `value` has already passed cbor_to_json, so its types are right. Paths follow AWS's
    validation messages: lower-camel member names, list items as `<list>.<n>.member`.
    """
    problems: list[str] = []
    where = ".".join(path)
    kind = shape.type_name
    if kind == "structure":
        for name in shape.required_members:
            if _absent(value.get(name)):
                problems.append(
                    f"Value null at '{'.'.join([*path, _camel(name)])}' failed to satisfy "
                    "constraint: Member must not be null"
                )
        for key, item in value.items():
            member = shape.members.get(key)
            if member is not None and not _absent(item):
                problems += validate(member, item, [*path, _camel(key)])
        return problems
    minimum, maximum = shape.metadata.get("min"), shape.metadata.get("max")
    if kind in ("list", "map", "string", "blob"):
        size = len(value)
        shown = f"'{value}'" if kind == "string" else f"'{json.dumps(value, default=str)[:100]}'"
        if kind == "blob":
            shown = "'<binary>'"
        if minimum is not None and size < minimum:
            problems.append(
                f"Value {shown} at '{where}' failed to satisfy constraint: "
                f"Member must have length greater than or equal to {minimum}"
            )
        if maximum is not None and size > maximum:
            problems.append(
                f"Value {shown} at '{where}' failed to satisfy constraint: "
                f"Member must have length less than or equal to {maximum}"
            )
    if kind == "string" and shape.enum and value not in shape.enum:
        problems.append(
            f"Value '{value}' at '{where}' failed to satisfy constraint: "
            f"Member must satisfy enum value set: [{', '.join(shape.enum)}]"
        )
    if kind in ("integer", "long", "short", "byte", "double", "float"):
        if minimum is not None and value < minimum:
            problems.append(
                f"Value '{value}' at '{where}' failed to satisfy constraint: "
                f"Member must have value greater than or equal to {minimum}"
            )
        if maximum is not None and value > maximum:
            problems.append(
                f"Value '{value}' at '{where}' failed to satisfy constraint: "
                f"Member must have value less than or equal to {maximum}"
            )
    if kind == "list":
        for i, item in enumerate(value, 1):
            problems += validate(shape.member, item, [*path, str(i), "member"])
    if kind == "map":
        for key, item in value.items():
            if not _absent(item):
                problems += validate(shape.value, item, [*path, str(key)])
    return problems


def json_to_cbor(shape: Shape, value: Any) -> Any:
    """moto's JSON value of `shape` -> the Python value cbor2 encodes as AWS's CBOR would be.

    Timestamps become tag 1 with a float64; doubles become floats (cbor2 writes float64) even
    when moto wrote an integer; integers stay integers. Nulls and members the model does not
    know are left out; nulls are dropped from lists (the Rust SDK rejects nulls in dense lists).
    """
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise TypeError(f"moto gave {type(value).__name__} for structure {shape.name}")
        return {
            key: json_to_cbor(shape.members[key], item)
            for key, item in value.items()
            if key in shape.members and item is not None
        }
    if kind == "list":
        return [json_to_cbor(shape.member, item) for item in value if item is not None]
    if kind == "map":
        return {k: json_to_cbor(shape.value, v) for k, v in value.items() if v is not None}
    if kind == "timestamp":
        return cbor2.CBORTag(1, _epoch(value))
    if kind in ("double", "float"):
        if isinstance(value, str):
            special = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
            return special[value] if value in special else float(value)
        return float(value)
    if kind in ("integer", "long", "short", "byte"):
        return int(value)
    if kind == "boolean":
        if isinstance(value, str):
            return value.lower() == "true"
        return bool(value)
    if kind == "blob":
        return base64.b64decode(value) if isinstance(value, str) else bytes(value)
    if kind == "string":
        return str(value)
    raise TypeError(f"unsupported shape type {kind} ({shape.name})")


def _epoch(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a timestamp")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime.datetime):
        moment = value
    else:
        moment = parse_timestamp(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()
