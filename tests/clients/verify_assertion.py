#!/usr/bin/env python3
"""An independent verifier of X-Auth-Request-Assertion, with PyJWT (as an app behind the
proxy would verify it). Reads one JSON object on stdin:

    {"jwks": {...}, "token": "...", "audience": "...", "issuer": "...", "later": 0}

and prints {"ok": true, "claims": {...}} or {"ok": false, "error": "<PyJWT's exception>"}.
`later` verifies as if that many seconds had passed: PyJWT's clock, moved on.
"""
import datetime
import json
import sys

import jwt
import jwt.api_jwt

ask = json.load(sys.stdin)
LATER = datetime.timedelta(seconds=float(ask.get("later", 0)))


class Later(datetime.datetime):
    """PyJWT's `datetime`, whose `now` is LATER ahead."""

    @classmethod
    def now(cls, tz=None):
        return datetime.datetime.now(tz) + LATER


jwt.api_jwt.datetime = Later

try:
    header = jwt.get_unverified_header(ask["token"])
    keys = {key.key_id: key for key in jwt.PyJWKSet.from_dict(ask["jwks"]).keys}
    if header.get("kid") not in keys:
        raise jwt.InvalidKeyError(f"no published key has kid {header.get('kid')!r}")
    claims = jwt.decode(
        ask["token"],
        keys[header["kid"]].key,
        algorithms=["ES256"],
        audience=ask["audience"],
        issuer=ask["issuer"],
        options={"require": ["iss", "aud", "sub", "iat", "exp", "jti"]},
    )
    print(json.dumps({"ok": True, "claims": claims}))
except jwt.PyJWTError as err:
    print(json.dumps({"ok": False, "error": type(err).__name__, "why": str(err)}))
