#!/usr/bin/env python3
"""greenlight's AWS emulator: moto's server app, in-process, with a fidelity layer on top.

    localstack/emulator.py [--port N] [--host H] [--exit-on-stdin-eof] [--report-not-in-use]
                           [--verbose] [--stock]

(Any python3 will do: it re-executes itself with localstack/.venv/bin/python when that exists.)

Prints exactly one line, `GREENLIGHT_EMULATOR_READY http://<host>:<port>`, on stdout once it
accepts connections. Point any AWS SDK at that URL with AWS_ENDPOINT_URL (plus dummy credentials
and a region).

Why not `moto_server`: we need to monkeypatch moto's models before the first request (see
fidelity/), add test-only endpoints (/_greenlight/target-health, /_greenlight/requests),
translate Smithy RPC v2 CBOR requests (the Rust SDK's CloudWatch; fidelity/cloudwatch_cbor.py),
serialise requests (moto is not thread-safe) and clear our own state on `POST /moto-api/reset`.
All of that is a thin WSGI wrapper around moto's own DomainDispatcherApplication.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, unquote_plus

HERE = os.path.dirname(os.path.abspath(__file__))
# fidelity/ patches this moto release's internals (see requirements.txt); others may break it.
MOTO_VERSION = "5.2.5"

# Make `import fidelity` work whatever the current directory is.
sys.path.insert(0, HERE)


def _ensure_pinned_moto() -> None:
    """Run under localstack/.venv, where install.sh put the moto the patches were written for.

    Started with another Python (say, a system python3 with some other moto), re-execute
    ourselves with the venv's; without a venv, insist on the pinned version.
    """
    venv = os.path.join(HERE, ".venv")
    venv_python = os.path.join(venv, "bin", "python")
    if os.path.realpath(sys.prefix) != os.path.realpath(venv) and os.path.exists(venv_python):
        os.execv(venv_python, [venv_python, os.path.abspath(__file__), *sys.argv[1:]])
    try:
        import moto
    except ImportError:
        sys.exit("emulator.py: moto is not installed; run localstack/install.sh")
    if moto.__version__ != MOTO_VERSION:
        sys.exit(
            f"emulator.py: needs moto {MOTO_VERSION}, found {moto.__version__}; "
            "run localstack/install.sh and use localstack/.venv/bin/python"
        )


READY_PREFIX = "GREENLIGHT_EMULATOR_READY"
TEST_PREFIX = "/_greenlight/"
# moto's own endpoints (moto routes /favicon.ico there too): not AWS API calls, never logged.
MOTO_API_PREFIXES = ("/moto-api", "/favicon.ico")

# SigV4 credential scope: Credential=<key id>/<date>/<region>/<service>/aws4_request
CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]*/[^/,\s]*/[^/,\s]*/([^/,\s]+)/aws4_request")
APP_NAME = re.compile(r"\bapp/([A-Za-z0-9!#$%&'*+.^_`|~-]+)")
# Smithy RPC v2 CBOR (e.g. CloudWatch from the Rust SDK): POST /service/<svc>/operation/<Op>
RPC_V2_PATH = re.compile(r"/service/[^/]+/operation/([^/]+)/?$")
FORM_ACTION = re.compile(rb"(?:^|&)Action=([^&]*)")

StartResponse = Callable[..., Any]


class SerialisingApp:
    """WSGI wrapper: one request at a time into moto, plus the test-only endpoints.

    werkzeug serves each connection on its own thread (the Rust SDK keeps a pool of connections),
    but moto's backends are plain dicts mutated without locks; one concurrent list+create race
    was measured to give a 500. A single lock held for the whole request, including reading the
    response body, makes the emulator behave like a (fast) serial AWS.
    """

    def __init__(self, moto_app: Any, fidelity: Any | None):
        self.moto_app = moto_app
        self.fidelity = fidelity
        # Smithy RPC v2 CBOR (the Rust SDK's CloudWatch) -> JSON 1.0 into moto, and back.
        self.cbor = fidelity.cloudwatch_cbor.Translator(moto_app) if fidelity else None
        self.lock = threading.Lock()
        # Every AWS API request served, in order: {"service", "action", "time"} (see
        # describe_request). Appended under the lock, so the order is the order moto saw them.
        self.requests: list[dict[str, Any]] = []

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        logged = None
        if not path.startswith(TEST_PREFIX) and not path.startswith(MOTO_API_PREFIXES):
            logged = describe_request(environ, path)  # outside the lock: it may read the body
        with self.lock:
            if path.startswith(TEST_PREFIX):
                return self._test_endpoint(path, method, environ, start_response)
            if logged is not None:
                # Before moto runs, so requests it answers with an error (or fails on) count too.
                logged["time"] = time.time()
                self.requests.append(logged)
            if self.cbor is not None and (route := self.fidelity.cloudwatch_cbor.match(path)):
                return self.cbor(environ, start_response, route)
            result = self.moto_app(environ, start_response)
            try:
                body = b"".join(result)  # drain inside the lock: moto may render lazily
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            if path.rstrip("/") == "/moto-api/reset" and method == "POST":
                # moto's reset recreates every backend; our state refers to resources that no
                # longer exist, so it goes too, and the request log starts afresh.
                self.requests.clear()
                if self.fidelity:
                    self.fidelity.STATE.reset()
            return [body]

    def _test_endpoint(
        self, path: str, method: str, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        if path.rstrip("/") == "/_greenlight/requests":
            # Not a fidelity fix: the request log works with --stock too.
            return self._requests_endpoint(method, environ, start_response)
        if self.fidelity is None:
            return _json(start_response, 404, {"error": "fidelity layer disabled (--stock)"})
        if path.rstrip("/") != "/_greenlight/target-health":
            return _json(start_response, 404, {"error": f"no test endpoint {path}"})
        try:
            if method == "GET":
                return _json(start_response, 200, self.fidelity.STATE.describe())
            if method == "DELETE":
                self.fidelity.STATE.clear_health_rules()
                return _json(start_response, 200, {"status": "ok"})
            if method == "POST":
                length = int(environ.get("CONTENT_LENGTH") or 0)
                raw = environ["wsgi.input"].read(length) if length else b""
                rule = self.fidelity.STATE.add_health_rule(json.loads(raw or b"null"))
                return _json(start_response, 200, {"status": "ok", "rule": rule})
        except (ValueError, TypeError) as err:  # json.JSONDecodeError is a ValueError
            return _json(start_response, 400, {"error": str(err)})
        return _json(
            start_response, 405, {"error": f"{method} not allowed; use GET, POST or DELETE"}
        )

    def _requests_endpoint(
        self, method: str, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        """GET [?since=N]: the log from index N on (default 0) and its length; DELETE: clear it.

        A test reads `total` as a mark before the code under test runs, then asks for
        `since=<mark>` to see exactly the requests that code made.
        """
        if method == "DELETE":
            self.requests.clear()
            return _json(start_response, 200, {"status": "ok"})
        if method != "GET":
            return _json(start_response, 405, {"error": f"{method} not allowed; use GET or DELETE"})
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        unknown = set(query) - {"since"}
        if unknown:
            return _json(start_response, 400, {"error": f"unknown parameters {sorted(unknown)}"})
        raw = query.get("since", ["0"])
        if len(raw) != 1 or not re.fullmatch(r"[0-9]+", raw[0]):
            return _json(start_response, 400, {"error": "since must be an integer >= 0"})
        since = int(raw[0])
        return _json(
            start_response,
            200,
            {"requests": self.requests[since:], "since": since, "total": len(self.requests)},
            indent=None,
        )


def describe_request(environ: dict[str, Any], path: str) -> dict[str, Any]:
    """{"service": signing name, "action": operation} of an AWS API request (None if unknown).

    The service is the credential scope's signing name (the Authorization header, or the
    X-Amz-Credential query parameter of a presigned request). The operation comes from, in
    turn: X-Amz-Target (JSON protocols), a Smithy RPC v2 CBOR path, the Action of a form body
    (query and EC2 protocols; the body is read and put back, as moto does when it routes an
    unsigned request), or an Action query parameter.
    """
    scope = CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if scope is None and "X-Amz-Credential" in environ.get("QUERY_STRING", ""):
        credential = parse_qs(environ["QUERY_STRING"]).get("X-Amz-Credential") or [""]
        scope = CREDENTIAL_SCOPE.search(f"Credential={credential[0]}")
    service = scope.group(1) if scope is not None else None
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        action = target.rsplit(".", 1)[-1]
    elif match := RPC_V2_PATH.search(path):
        action = match.group(1)
    else:
        action = _form_action(environ)
        if action is None:
            action = (parse_qs(environ.get("QUERY_STRING", "")).get("Action") or [None])[0]
    # Who sent it: the SDK puts the app name in its user agent (`app/greenlight`), so tests
    # can tell greenlight's calls from their own setup's.
    agent = environ.get("HTTP_USER_AGENT", "") + " " + environ.get("HTTP_X_AMZ_USER_AGENT", "")
    app = APP_NAME.search(agent)
    return {"service": service, "action": action, "app": app.group(1) if app else None}


def _form_action(environ: dict[str, Any]) -> str | None:
    if not environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        return None
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if length <= 0:
        return None
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    match = FORM_ACTION.search(body)
    return unquote_plus(match.group(1).decode("utf-8", "replace")) if match else None


def _json(
    start_response: StartResponse, status: int, payload: Any, indent: int | None = 1
) -> list[bytes]:
    reasons = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
    body = json.dumps(payload, indent=indent).encode()
    start_response(
        f"{status} {reasons[status]}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _exit_on_stdin_eof() -> None:
    """Block on stdin; when the parent closes it (or dies), exit at once.

    A test harness that is killed cannot run its cleanup, but the kernel closes its end of our
    stdin pipe, so this is the one signal that always arrives. os._exit skips interpreter
    shutdown, which could otherwise wait on werkzeug's request threads.
    """
    try:
        while sys.stdin.buffer.read(65536):
            pass
    except (OSError, ValueError):
        pass
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    _ensure_pinned_moto()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--port", type=int, default=0, help="TCP port; 0 picks a free one (default)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="exit as soon as stdin reaches EOF (so the emulator dies with its parent)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request on stderr")
    parser.add_argument(
        "--report-not-in-use",
        action="store_true",
        help="targets of a target group no listener or rule forwards to report unused "
        "(Target.NotInUse), as on AWS; off by default",
    )
    parser.add_argument(
        "--stock", action="store_true", help="serve stock moto without the fidelity layer"
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be between 0 and 65535, not {args.port}")

    # Request logging goes to stderr. Off by default: a harness that pipes stderr and never
    # reads it would otherwise stall the emulator once the pipe buffer fills.
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.verbose else logging.ERROR)

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    fidelity = None
    if not args.stock:
        import fidelity as fidelity_module

        fidelity_module.install(report_not_in_use=args.report_not_in_use)
        fidelity = fidelity_module

    app = SerialisingApp(DomainDispatcherApplication(create_backend_app), fidelity)
    server = make_server(
        args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler
    )
    if args.exit_on_stdin_eof:
        threading.Thread(target=_exit_on_stdin_eof, name="stdin-eof", daemon=True).start()
    # SIGTERM (what `kill` and most harnesses send) and Ctrl-C are normal ways to stop us:
    # exit 0 at once, without interpreter shutdown (the stdin thread may hold stdin's lock).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: os._exit(0))

    # Print an address a client can connect to, even when bound to every interface.
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(args.host, args.host)
    host = f"[{host}]" if ":" in host else host
    print(f"{READY_PREFIX} http://{host}:{server.server_port}", flush=True)
    # Nothing else may go to stdout: a harness may stop reading it after the ready line, and a
    # full pipe would block us. Anything moto prints goes to stderr from here on.
    sys.stdout = sys.stderr
    server.serve_forever()


if __name__ == "__main__":
    main()
