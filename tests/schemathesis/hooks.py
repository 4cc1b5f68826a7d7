"""Schemathesis hooks for tests/schemathesis.rs: how generated requests carry a login token.

Every request sends the token the Rust test logged in with (OUTCALL_TOKEN) in X-XTRA-AUTH-ID,
except `DELETE /api/sessions`: logging out revokes the token it is sent with, so each of those
requests logs in afresh and revokes only its own token. These logins come from 127.0.0.2: the
many wrong logins schemathesis itself generates come from 127.0.0.1, and the server's login
throttle (per client address) rightly holds that address back.
"""

import os

import requests
import schemathesis
from requests.adapters import HTTPAdapter


class FromSecondLoopbackAddress(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = ("127.0.0.2", 0)
        super().init_poolmanager(*args, **kwargs)


LOGINS = requests.Session()
LOGINS.mount("http://", FromSecondLoopbackAddress())


@schemathesis.auth(refresh_interval=None)
class OutcallToken:
    def get(self, case, context):
        if case.operation.method.upper() == "DELETE" and case.operation.path == "/api/sessions":
            answer = LOGINS.post(
                os.environ["OUTCALL_BASE_URL"] + "/api/sessions",
                json={"login": "admin", "password": os.environ["OUTCALL_ADMIN_PASSWORD"]},
                timeout=30,
            )
            answer.raise_for_status()
            return answer.json()["token"]
        return os.environ["OUTCALL_TOKEN"]

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["X-XTRA-AUTH-ID"] = data
