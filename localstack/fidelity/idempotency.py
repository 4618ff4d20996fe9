"""ClientToken idempotency for EC2 create calls that stock moto runs twice.

AWS: a request repeated with the same ClientToken and the same parameters returns the first
request's result and creates nothing; the same token with other parameters fails with
IdempotentParameterMismatch. Stock moto ignores ClientToken, so a retry after a lost response
creates a second launch-template version (or fails with AlreadyExists for CreateLaunchTemplate),
and code that relies on the token to make its retries safe cannot be tested.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError

from .patching import wrap
from .state import STATE

# Not part of what a token is bound to: the token itself, what every request carries, and
# signing parameters of presigned (query-authenticated) requests.
IGNORED_PARAMS = {"Action", "Version", "ClientToken"}
IGNORED_PREFIXES = ("X-Amz-", "AWSAccessKeyId", "Signature", "Timestamp", "Expires")

Fingerprint = tuple[tuple[str, tuple[str, ...]], ...]


class IdempotentParameterMismatch(EC2ClientError):
    def __init__(self) -> None:
        super().__init__(
            "IdempotentParameterMismatch",
            "Arguments on this idempotent request are inconsistent with arguments used in "
            "previous request(s).",
        )


def request_fingerprint(querystring: dict[str, list[str]]) -> Fingerprint:
    """The request's parameters as sent (flattened query form), in a comparable shape."""
    return tuple(
        sorted(
            (key, tuple(values))
            for key, values in querystring.items()
            if key not in IGNORED_PARAMS and not key.startswith(IGNORED_PREFIXES)
        )
    )


def make_idempotent(cls: type, method: str, action: str) -> None:
    """Honour ClientToken on cls.method, a moto response method returning an ActionResult.

    Tokens are scoped to (account, region, action), as on AWS. A first request that fails
    binds nothing (its retry runs again). DryRun requests pass straight through: they create
    nothing and must not bind a token. The stored result is the first response's content; it is
    returned as it was even if the resource changed or was deleted since (EC2's documented rule
    for RunInstances: the token keeps answering the original result).
    """

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def idempotent(self: Any) -> Any:
            token = self._get_param("ClientToken")
            if not token or self._get_bool_param("DryRun", False):
                return original(self)
            key = (self.current_account, self.region, action, token)
            fingerprint = request_fingerprint(self.querystring)
            seen = STATE.client_tokens.get(key)
            if seen is not None:
                if seen[0] != fingerprint:
                    raise IdempotentParameterMismatch()
                return ActionResult(copy.deepcopy(seen[1]))
            result = original(self)
            if isinstance(result, ActionResult):
                STATE.client_tokens[key] = (fingerprint, copy.deepcopy(result.result))
            return result

        return idempotent

    wrap(cls, method, make)
