"""Every governed endpoint x every role x (the caller's own object, another person's
object), over HTTPS with real Hub users: the status each gets, and that each request left
exactly one audit record (outcome `denied` for every refusal).

Deny by default is the table's default too: a role not listed for an endpoint must get
403, and anonymous callers 401. An endpoint the app serves without a row here fails
`test_every_endpoint_is_in_the_matrix`."""

from __future__ import annotations

import datetime as dt
import itertools
import ssl
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from backend.governance import consent
from backend.stack.context import StackContext
from tests import seed
from tests.hub_people import Backend, add_member, hub_people

ROLES = ("member", "coach", "researcher", "steward", "admin", "auditor")
T0 = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
RANGE = {"start": T0.isoformat(), "end": (T0 + dt.timedelta(days=1)).isoformat()}
# Served to devices with API keys, not to people (tests/test_ingest_api.py).
NOT_GOVERNED = {"POST /v1/ingest/batches"}


@dataclass
class World:
    backend: Backend
    names: dict[str, str]
    tokens: dict[str, str]
    ann: uuid.UUID  # the member's own record, assigned to the coach
    bob: uuid.UUID  # another person: nobody's here
    cal: uuid.UUID  # a third member, for the admin's assignment changes
    study: str  # the researcher's study
    other_study: str  # somebody else's
    quarantined: uuid.UUID
    new_study: str  # the one the admin creates, staffs and closes


@pytest.fixture(scope="module")
def world(ctx: StackContext) -> Iterator[World]:
    roles = {r: r for r in ROLES}
    with hub_people(ctx, roles) as (names, tokens):
        tag = names["member"].rsplit("-", 1)[1]
        ann, bob, cal = add_member(ctx, names["member"]), add_member(ctx), add_member(ctx)
        study, other_study = f"mx-{tag}", f"mx-other-{tag}"
        with ctx.db.connect("owner") as conn:
            conn.execute(
                "insert into governance.coach_assignments (coach, member_id) values (%s, %s)",
                (names["coach"], ann),
            )
            seed.study(conn, study, [names["researcher"]])
            seed.study(conn, other_study, [f"someone-else-{tag}"])
            seed.observations(conn, [(m, T0, "8867-4", 61.0, "/min") for m in (ann, bob)])
            row = conn.execute(
                "insert into processed.quarantine (raw_record_id, raw_received_at, reason, record)"
                " values (gen_random_uuid(), now(), 'implausible', '{}') returning quarantine_id"
            ).fetchone()
            assert row is not None
        with ctx.db.connect("backend") as conn:
            seed.consent_all(conn, [ann], "coaching")
            seed.consent_all(conn, [ann], consent.study_purpose(study))
        backend = Backend(ctx)
        yield World(
            backend, names, tokens, ann, bob, cal, study, other_study, row[0], f"mx-new-{tag}"
        )
        backend.close()


Request = tuple[str, dict[str, Any] | None, object]  # path, query, JSON body
Build = Callable[[World, str, str], Request]


def _member_path(suffix: str, query: dict[str, Any] | None = None) -> Build:
    def build(w: World, role: str, which: str) -> Request:
        if which == "other":
            return f"/v1/members/{w.bob}/{suffix}", query, None
        own = str(w.ann) if role == "coach" else "self"
        return f"/v1/members/{own}/{suffix}", query, None

    return build


def _study_path(suffix: str, query: dict[str, Any] | None, body: object) -> Build:
    def build(w: World, role: str, which: str) -> Request:
        return f"/v1/studies/{w.study if which == 'own' else w.other_study}/{suffix}", query, body

    return build


def _fixed(path: str, query: dict[str, Any] | None = None, body: object = None) -> Build:
    return lambda w, role, which: (path, query, body)


def _at_quarantine(suffix: str = "", body: object = None) -> Build:
    def build(w: World, role: str, which: str) -> Request:
        qid = w.quarantined if which == "own" else uuid.uuid4()
        return f"/v1/quarantine/{qid}{'/' if suffix else ''}{suffix}", None, body

    return build


def _rule(w: World, role: str, which: str) -> Request:
    subject = f"user:matrix-{w.names['admin']}"
    return "", None, {"subject": subject, "resource": "quality", "action": "read"}


def _assignment(w: World, role: str, which: str) -> Request:
    return "", None, {"coach": f"matrix-{w.names['admin']}", "member": str(w.cal)}


def _new_study(suffix: str, body: Build | None = None) -> Build:
    def build(w: World, role: str, which: str) -> Request:
        payload = body(w, role, which)[2] if body else None
        return f"/v1/studies/{w.new_study}/{suffix}", None, payload

    return build


def _study_body(w: World, role: str, which: str) -> Request:
    return "", None, {"study_id": w.new_study, "title": "matrix"}


def _researcher(w: World, role: str, which: str) -> Request:
    # A real researcher account: a name nobody holds is refused (422).
    return "", None, {"researcher": w.names["researcher"]}


_ALERT_DAYS = itertools.count()


def _alert(action: str) -> Build:
    """A fresh alert about the coach's member (own) or somebody else's (other), as the
    detector stores them."""

    def build(w: World, role: str, which: str) -> Request:
        member = w.ann if which == "own" else w.bob
        with w.backend.ctx.db.connect("owner") as conn:
            row = conn.execute(
                "insert into analytics.alerts (member_id, rule_id, rule_version, kind, metric,"
                " day, value, threshold, explanation, evidence) values (%s, 'rhr-up', 1,"
                " 'personal', 'resting_hr', date '2000-01-01' + %s, 80, '-', 'matrix', '[]')"
                " returning alert_id",
                (member, next(_ALERT_DAYS)),
            ).fetchone()
        assert row is not None
        return f"/v1/alerts/{row[0]}/{action}", None, {"note": "matrix"}

    return build


def _at(path: str, body: Build) -> Build:
    return lambda w, role, which: (path, None, body(w, role, which)[2])


@dataclass(frozen=True)
class Row:
    build: Build
    allowed: dict[str, tuple[int, int | None]]  # role -> (own object, other object)
    objects: tuple[str, ...] = ("own", "other")


COHORT = {"code": "8867-4", **RANGE, "period": "day"}
TRAINING_SET = {"service": "research_model", "rows": [{"pseudonym": "p-x", "at": RANGE["end"]}]}
CONSENT = {"purpose": "coaching", "category": "wearables", "granted": True, "consent_version": "v1"}

MATRIX: dict[str, Row] = {
    "GET /v1/members/{member}/timeline": Row(
        _member_path("timeline", RANGE), {"member": (200, 403), "coach": (200, 404)}
    ),
    "GET /v1/members/{member}/consent": Row(
        _member_path("consent"), {"member": (200, 403), "coach": (200, 404)}
    ),
    "POST /v1/members/self/consent": Row(
        _fixed("/v1/members/self/consent", body=CONSENT), {"member": (201, None)}, ("own",)
    ),
    "GET /v1/studies/{study}/dataset": Row(
        _study_path("dataset", RANGE, None), {"researcher": (200, 404)}
    ),
    "GET /v1/members/{member}/features": Row(
        _member_path("features"), {"member": (200, 403), "coach": (200, 404)}
    ),
    "GET /v1/coach/triage": Row(_fixed("/v1/coach/triage"), {"coach": (200, None)}, ("own",)),
    "GET /v1/members/{member}/alerts": Row(
        _member_path("alerts"), {"member": (200, 403), "coach": (200, 404)}
    ),
    "POST /v1/alerts/{alert}/acknowledge": Row(_alert("acknowledge"), {"coach": (200, 404)}),
    "POST /v1/alerts/{alert}/dismiss": Row(_alert("dismiss"), {"coach": (200, 404)}),
    "GET /v1/members/{member}/labs": Row(
        _member_path("labs"), {"member": (200, 403), "coach": (200, 404)}
    ),
    "GET /v1/members/{member}/daily": Row(
        _member_path("daily"), {"member": (200, 403), "coach": (200, 404)}
    ),
    "GET /v1/feature-views": Row(
        _fixed("/v1/feature-views"), {"researcher": (200, None), "coach": (200, None)}, ("own",)
    ),
    "POST /v1/studies/{study}/training-set": Row(
        _study_path("training-set", None, TRAINING_SET), {"researcher": (200, 404)}
    ),
    "POST /v1/studies/{study}/cohort-stats": Row(
        _study_path("cohort-stats", None, COHORT), {"researcher": (200, 404)}
    ),
    "GET /v1/quarantine": Row(_fixed("/v1/quarantine"), {"steward": (200, None)}, ("own",)),
    "GET /v1/quarantine/{quarantine_id}": Row(_at_quarantine(), {"steward": (200, 404)}),
    "POST /v1/quarantine/{quarantine_id}/reject": Row(
        _at_quarantine("reject", {"note": "matrix"}), {"steward": (200, 404)}
    ),
    "GET /v1/quality": Row(_fixed("/v1/quality"), {"steward": (200, None)}, ("own",)),
    "GET /v1/audit": Row(_fixed("/v1/audit"), {"auditor": (200, None)}, ("own",)),
    "GET /v1/audit/verify": Row(_fixed("/v1/audit/verify"), {"auditor": (200, None)}, ("own",)),
    "GET /v1/policy": Row(_fixed("/v1/policy"), {"admin": (200, None)}, ("own",)),
    # The admin's grant creates the rule (201), the revoke after it removes it again.
    "POST /v1/policy/grants": Row(
        _at("/v1/policy/grants", _rule), {"admin": (201, None)}, ("own",)
    ),
    "POST /v1/policy/grants/revoke": Row(
        _at("/v1/policy/grants/revoke", _rule), {"admin": (200, None)}, ("own",)
    ),
    "GET /v1/assignments": Row(_fixed("/v1/assignments"), {"admin": (200, None)}, ("own",)),
    "POST /v1/assignments": Row(
        _at("/v1/assignments", _assignment), {"admin": (201, None)}, ("own",)
    ),
    "POST /v1/assignments/revoke": Row(
        _at("/v1/assignments/revoke", _assignment), {"admin": (200, None)}, ("own",)
    ),
    "GET /v1/studies": Row(
        _fixed("/v1/studies"), {"researcher": (200, None), "admin": (200, None)}, ("own",)
    ),
    "GET /v1/studies/{study}": Row(
        lambda w, role, which: (
            f"/v1/studies/{w.study if which == 'own' else w.other_study}",
            None,
            None,
        ),
        {"researcher": (200, 404), "admin": (200, 200)},
    ),
    # In this order: the admin creates a study, staffs it, unstaffs it and closes it.
    "POST /v1/studies": Row(_at("/v1/studies", _study_body), {"admin": (201, None)}, ("own",)),
    "POST /v1/studies/{study}/researchers": Row(
        _new_study("researchers", _researcher), {"admin": (201, None)}, ("own",)
    ),
    "POST /v1/studies/{study}/researchers/revoke": Row(
        _new_study("researchers/revoke", _researcher), {"admin": (200, None)}, ("own",)
    ),
    "PUT /v1/studies/{study}/access-level": Row(
        _new_study("access-level", lambda w, role, which: ("", None, {"level": "row-level"})),
        {"admin": (200, None)},
        ("own",),
    ),
    "POST /v1/studies/{study}/close": Row(_new_study("close"), {"admin": (200, None)}, ("own",)),
}


def expected(endpoint: str, role: str, which: str) -> int:
    if role == "anonymous":
        return 401
    own, other = MATRIX[endpoint].allowed.get(role, (403, 403))
    status = own if which == "own" else other
    assert status is not None
    return status


CASES = [
    (endpoint, role, which)
    for endpoint, row in MATRIX.items()
    for role in ("anonymous", *ROLES)
    for which in row.objects
]


@pytest.mark.parametrize(("endpoint", "role", "which"), CASES, ids=["|".join(c) for c in CASES])
def test_matrix(world: World, endpoint: str, role: str, which: str) -> None:
    method, template = endpoint.split(" ", 1)
    path, query, body = MATRIX[endpoint].build(world, role, which)
    token = world.tokens.get(role)
    r = world.backend.call(method, path or template, token, params=query, json=body)
    want = expected(endpoint, role, which)
    assert r.status_code == want, r.text
    actor = world.names.get(role, "anonymous")
    outcome = "allowed" if want < 400 else "denied"
    assert world.backend.audit_of(r) == [(actor, outcome, want)]


def test_every_endpoint_is_in_the_matrix(ctx: StackContext) -> None:
    tls = ssl.create_default_context(cafile=str(ctx.layout.ca_cert))
    spec = httpx.get(f"{ctx.backend_url}/openapi.json", verify=tls, timeout=30).json()
    served = {f"{method.upper()} {path}" for path, ops in spec["paths"].items() for method in ops}
    assert served - NOT_GOVERNED == set(MATRIX)
    assert served >= NOT_GOVERNED
