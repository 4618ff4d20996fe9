"""A Smithy RPC v2 CBOR client that sends what the AWS SDK for Rust sends, and reads as strictly.

selftest.py uses it to test the emulator's CloudWatch CBOR layer (fidelity/cloudwatch_cbor.py)
without building Rust. What it reproduces, from aws-sdk-cloudwatch 1.140's generated code and
aws-smithy-cbor 0.64 (read, not copied):

Requests
- `POST /service/GraniteServiceVersion20100801/operation/<Operation>`
- headers `Content-Type: application/cbor`, `smithy-protocol: rpc-v2-cbor`,
  `Accept: application/cbor`, `x-amzn-query-mode: true` (CloudWatch is @awsQueryCompatible),
  `Content-Length`; SigV4 with signing name `monitoring` (here botocore's signer)
- the body written member by member as smithy-rs's serializers do: a structure is an
  indefinite-length map (0xbf ... 0xff), a union a map of length 1, lists and maps have
  definite lengths, strings are definite text strings, integers take the shortest encoding,
  doubles are float64, timestamps are tag 1 + float64 epoch seconds, blobs are byte strings;
  members are written in model order and unset ones are left out
- PutMetricData (@requestCompression) bodies of 10240 bytes or more are gzipped and sent with
  `Content-Encoding: gzip`, as the SDK does by default

Responses, decoded the way the generated deserializers do, and failing where they fail:
- a 2xx answer is the output shape: a top-level map (definite or indefinite) and nothing after
  it; members the model does not know are skipped; a null member is absent; a double must be
  a CBOR float (minicbor's f64() refuses an integer), an integer must be a CBOR integer that
  fits (i32 for integer, i64 for long), a timestamp must be tag 1 over an integer or a float,
  a string a text string, a list may not hold null; for an operation without output the body
  is not read at all (the SDK ignores it)
- any other status is an error: the body is a map whose `__type` (namespace and `:...` suffix
  cut off) and `message` / `Message` / `errorMessage` give code and message, then the
  `x-amzn-query-error: Code;Fault` header, when present, replaces the code
"""

from __future__ import annotations

import gzip
import struct
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.model import OperationModel, ServiceModel, Shape

SERVICE_NAME = "GraniteServiceVersion20100801"
SIGNING_NAME = "monitoring"
MIN_COMPRESSION_SIZE = 10240  # aws-sdk-cloudwatch's default request_min_compression_size_bytes


class DecodeError(Exception):
    """Where the Rust SDK's deserializer would fail on this response."""


# -- writing, as smithy-rs's generated serializers do ----------------------------------------------


def _head(out: bytearray, major: int, n: int) -> None:
    if n < 24:
        out.append(major << 5 | n)
    elif n <= 0xFF:
        out += bytes([major << 5 | 24, n])
    elif n <= 0xFFFF:
        out += bytes([major << 5 | 25]) + n.to_bytes(2, "big")
    elif n <= 0xFFFFFFFF:
        out += bytes([major << 5 | 26]) + n.to_bytes(4, "big")
    else:
        out += bytes([major << 5 | 27]) + n.to_bytes(8, "big")


def encode(shape: Shape, value: Any, out: bytearray | None = None) -> bytearray:
    """`value` (boto3-style Python params) of `shape`, as aws-sdk-cloudwatch writes it."""
    out = bytearray() if out is None else out
    kind = shape.type_name
    if kind == "structure" and getattr(shape, "is_union", False):
        ((name, item),) = [(k, v) for k, v in value.items() if v is not None]
        _head(out, 5, 1)  # a union: encoder.map(1), its one member
        encode_text(out, name)
        encode(shape.members[name], item, out)
    elif kind == "structure":
        out.append(0xBF)  # encoder.begin_map(): indefinite length
        for name, member in shape.members.items():  # model order, as the generated code
            if value.get(name) is not None:
                encode_text(out, name)
                encode(member, value[name], out)
        out.append(0xFF)  # encoder.end()
    elif kind == "list":
        _head(out, 4, len(value))
        for item in value:
            encode(shape.member, item, out)
    elif kind == "map":
        _head(out, 5, len(value))
        for key, item in value.items():
            encode_text(out, key)
            encode(shape.value, item, out)
    elif kind == "string":
        encode_text(out, value)
    elif kind == "blob":
        data = value.encode() if isinstance(value, str) else bytes(value)
        _head(out, 2, len(data))
        out += data
    elif kind == "boolean":
        out.append(0xF5 if value else 0xF4)
    elif kind in ("integer", "long", "short", "byte"):
        if value >= 0:
            _head(out, 0, value)
        else:
            _head(out, 1, -1 - value)
    elif kind == "double":
        out += b"\xfb" + struct.pack(">d", float(value))
    elif kind == "float":
        out += b"\xfa" + struct.pack(">f", float(value))
    elif kind == "timestamp":
        seconds = value.timestamp() if hasattr(value, "timestamp") else float(value)
        out += b"\xc1\xfb" + struct.pack(">d", seconds)  # tag 1, then encoder.f64()
    else:
        raise TypeError(f"cannot encode shape type {kind}")
    return out


def encode_text(out: bytearray, text: str) -> None:
    data = text.encode()
    _head(out, 3, len(data))
    out += data


# -- reading, as smithy-rs's generated deserializers do --------------------------------------------


class Reader:
    """A CBOR reader with minicbor's type rules (the decoder under aws-smithy-cbor)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _byte(self) -> int:
        if self.pos >= len(self.data):
            raise DecodeError(f"unexpected end of input at {self.pos}")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DecodeError(f"unexpected end of input at {self.pos}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def peek(self) -> int:
        if self.pos >= len(self.data):
            raise DecodeError(f"unexpected end of input at {self.pos}")
        return self.data[self.pos]

    def _argument(self, info: int) -> int | None:
        if info < 24:
            return info
        if info in (24, 25, 26, 27):
            return int.from_bytes(self._take(1 << (info - 24)), "big")
        if info == 31:
            return None
        raise DecodeError(f"reserved additional information {info} at {self.pos - 1}")

    def _expect(self, major: int, what: str) -> int | None:
        at = self.pos
        b = self._byte()
        if b >> 5 != major:
            raise DecodeError(f"expected {what} at {at}, found initial byte 0x{b:02x}")
        return self._argument(b & 0x1F)

    def is_break(self) -> bool:
        return self.peek() == 0xFF

    def is_null(self) -> bool:
        return self.peek() in (0xF6, 0xF7)  # null; undefined reads as null

    def container(self, major: int, what: str) -> int | None:
        return self._expect(major, what)

    def text(self) -> str:
        n = self._expect(3, "a text string")
        if n is not None:
            return self._take(n).decode("utf-8")
        parts = []
        while not self.is_break():
            m = self._expect(3, "a text chunk")
            if m is None:
                raise DecodeError("nested indefinite text string")
            parts.append(self._take(m).decode("utf-8"))
        self.pos += 1
        return "".join(parts)

    def blob(self) -> bytes:
        n = self._expect(2, "a byte string")
        if n is not None:
            return self._take(n)
        parts = []
        while not self.is_break():
            m = self._expect(2, "a byte-string chunk")
            if m is None:
                raise DecodeError("nested indefinite byte string")
            parts.append(self._take(m))
        self.pos += 1
        return b"".join(parts)

    def integer(self, bits: int) -> int:
        at = self.pos
        b = self._byte()
        if b >> 5 not in (0, 1):
            raise DecodeError(f"expected an integer at {at}, found initial byte 0x{b:02x}")
        n = self._argument(b & 0x1F)
        if n is None:
            raise DecodeError(f"indefinite integer at {at}")
        value = n if b >> 5 == 0 else -1 - n
        if not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
            raise DecodeError(f"integer {value} at {at} does not fit in i{bits}")
        return value

    def double(self) -> float:
        at = self.pos
        b = self._byte()
        if b == 0xF9:
            return struct.unpack(">e", self._take(2))[0]
        if b == 0xFA:
            return struct.unpack(">f", self._take(4))[0]
        if b == 0xFB:
            return struct.unpack(">d", self._take(8))[0]
        raise DecodeError(f"expected f64 at {at}, found initial byte 0x{b:02x}")

    def boolean(self) -> bool:
        at = self.pos
        b = self._byte()
        if b not in (0xF4, 0xF5):
            raise DecodeError(f"expected a boolean at {at}, found initial byte 0x{b:02x}")
        return b == 0xF5

    def timestamp(self) -> float:
        at = self.pos
        if self._expect(6, "a tag") != 1:
            raise DecodeError(f"expected timestamp tag 1 at {at}")
        if self.peek() >> 5 == 7:
            return self.double()
        return float(self.integer(64))

    def skip(self) -> Any:
        """Any item, decoded loosely (used for members the model does not know)."""
        at = self.pos
        b = self._byte()
        major, info = b >> 5, b & 0x1F
        if major == 7:
            if info in (25, 26, 27):
                self.pos -= 1
                return self.double()
            if b in (0xF4, 0xF5):
                return b == 0xF5
            if b in (0xF6, 0xF7):
                return None
            raise DecodeError(f"unexpected simple value 0x{b:02x} at {at}")
        n = self._argument(info)
        if major in (0, 1):
            return n if major == 0 else -1 - n  # type: ignore[operator]
        if major in (2, 3):
            self.pos = at
            return self.blob() if major == 2 else self.text()
        if major == 4:
            items = []
            while (n is None and not self.is_break()) or (n is not None and len(items) < n):
                items.append(self.skip())
            if n is None:
                self.pos += 1
            return items
        if major == 5:
            pairs = {}
            count = 0
            while (n is None and not self.is_break()) or (n is not None and count < n):
                key = self.skip()
                pairs[key] = self.skip()
                count += 1
            if n is None:
                self.pos += 1
            return pairs
        return ("tag", n, self.skip())


def _entries(reader: Reader, major: int, what: str):  # type: ignore[no-untyped-def]
    n = reader.container(major, what)
    i = 0
    while (n is None and not reader.is_break()) or (n is not None and i < n):
        yield i
        i += 1
    if n is None:
        reader.pos += 1  # the break


def decode(shape: Shape, reader: Reader) -> Any:
    """One value of `shape`, read as the generated deserializer reads it."""
    kind = shape.type_name
    if kind == "structure":
        out: dict[str, Any] = {}
        for _ in _entries(reader, 5, "a map"):
            key = reader.text()
            member = shape.members.get(key)
            if member is None:
                reader.skip()
            elif reader.is_null():
                reader.pos += 1
            else:
                out[key] = decode(member, reader)
        return out
    if kind == "list":
        items = []
        for _ in _entries(reader, 4, "an array"):
            if reader.is_null():
                raise DecodeError(f"dense list cannot contain null values (at {reader.pos})")
            items.append(decode(shape.member, reader))
        return items
    if kind == "map":
        pairs = {}
        for _ in _entries(reader, 5, "a map"):
            key = reader.text()
            if reader.is_null():
                raise DecodeError(f"dense map cannot contain null values (at {reader.pos})")
            pairs[key] = decode(shape.value, reader)
        return pairs
    if kind == "string":
        return reader.text()
    if kind == "blob":
        return reader.blob()
    if kind == "boolean":
        return reader.boolean()
    if kind in ("integer", "short", "byte"):
        return reader.integer(32)
    if kind == "long":
        return reader.integer(64)
    if kind in ("double", "float"):
        return reader.double()
    if kind == "timestamp":
        return reader.timestamp()
    raise DecodeError(f"cannot decode shape type {kind}")


def decode_output(shape: Shape, body: bytes) -> dict[str, Any]:
    reader = Reader(body)
    value = decode(shape, reader)
    if reader.pos != len(body):
        raise DecodeError(f"encountered additional data; expected end of stream at {reader.pos}")
    return value


def decode_error(body: bytes, headers: dict[str, str]) -> tuple[str | None, str | None]:
    """(code, message) as aws-sdk-cloudwatch's parse_http_error_metadata finds them."""
    reader = Reader(body)
    code = message = None
    for _ in _entries(reader, 5, "a map"):
        key = reader.text()
        if key == "__type":
            raw = reader.text()
            raw = raw.split(":", 1)[0]
            code = raw.split("#", 1)[1] if "#" in raw else raw
        elif key in ("message", "Message", "errorMessage"):
            message = reader.text() if reader.peek() >> 5 == 3 else str(reader.skip())
        else:
            reader.skip()
    query_error = headers.get("x-amzn-query-error")
    if query_error and ";" in query_error:
        code = query_error.split(";", 1)[0]
    return code, message


# -- the client ------------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    output: dict[str, Any] | None = None  # the decoded output (2xx)
    code: str | None = None  # error code and message (otherwise)
    message: str | None = None
    sent_headers: dict[str, str] = field(default_factory=dict)
    sent_body: bytes = b""


class CloudWatchCbor:
    """Calls CloudWatch over rpcv2Cbor the way aws-sdk-cloudwatch does."""

    def __init__(self, endpoint: str, region: str, access_key: str, secret_key: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.region = region
        self.credentials = Credentials(access_key, secret_key)
        self.model: ServiceModel = botocore.session.get_session().get_service_model("cloudwatch")

    def operation(self, name: str) -> OperationModel:
        return self.model.operation_model(name)

    def call(
        self,
        operation: str,
        params: dict[str, Any] | None = None,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        drop_headers: tuple[str, ...] = (),
    ) -> Response:
        """One call. `body`/`headers`/`drop_headers` let a test send what the SDK would not."""
        op = self.operation(operation) if operation in self.model.operation_names else None
        if body is None:
            assert op is not None and op.input_shape is not None
            body = bytes(encode(op.input_shape, params or {}))
        send = {
            "Content-Type": "application/cbor",
            "smithy-protocol": "rpc-v2-cbor",
            "Accept": "application/cbor",
            "x-amzn-query-mode": "true",
        }
        if op is not None and op.request_compression and len(body) >= MIN_COMPRESSION_SIZE:
            body = gzip.compress(body)
            send["Content-Encoding"] = "gzip"
        send["Content-Length"] = str(len(body))
        send.update(headers or {})
        for name in drop_headers:
            send.pop(name, None)
        url = f"{self.endpoint}/service/{SERVICE_NAME}/operation/{operation}"
        signed = AWSRequest("POST", url, data=body, headers=send)
        SigV4Auth(self.credentials, SIGNING_NAME, self.region).add_auth(signed)
        req = urllib.request.Request(url, data=body, headers=dict(signed.headers), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, got, raw = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as err:
            status, got, raw = err.code, err.headers, err.read()
        response = Response(
            status,
            {k.lower(): v for k, v in got.items()},
            raw,
            sent_headers=dict(signed.headers),
            sent_body=body,
        )
        if 200 <= status < 300:
            if op is not None and op.output_shape is not None:
                response.output = decode_output(op.output_shape, raw)
            else:
                response.output = {}  # the SDK does not read the body of a Unit output
        else:
            response.code, response.message = decode_error(raw, response.headers)
        return response


def floats_are_float64(body: bytes) -> bool:
    """True when every float in the CBOR `body` is a float64 (the spec: no half floats)."""
    reader = Reader(body)
    while reader.pos < len(body):
        b = reader._byte()
        major, info = b >> 5, b & 0x1F
        if major == 7:
            if b in (0xF9, 0xFA):
                return False
            if b == 0xFB:
                reader._take(8)
            continue
        n = reader._argument(info)
        if major in (2, 3) and n is not None:
            reader._take(n)
    return True
