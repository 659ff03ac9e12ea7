"""The HTTP service: conversations streamed as Server-Sent Events, approvals, the reviewer inbox.

``create_app(settings)`` opens the runtime in the app's lifespan; tests pass a
``warden`` they opened themselves. Each tenant gets its own ``Warden`` (ledger,
journal, policy grants) over the shared store, model, index and Redis. Every
worker process of ``warden serve --workers N`` builds its own app; they share
state only through Redis and SQLite.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path as PathParam, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from warden.errors import (
    ApprovalConflictError,
    ApprovalExpiredError,
    ConfigurationError,
    ResumeError,
    ReviewerNotAllowedError,
    ThreadStateError,
)
from warden.runtime import TurnOutcome, Warden, build_context, open_index, open_redis, open_store
from warden.service.auth import AuthenticationError, Authenticator, Principal
from warden.service.chat import chat_model_from_settings
from warden.service.schemas import (
    ApprovalOut,
    DecisionsIn,
    ErrorOut,
    HistoryOut,
    MessageIn,
    PrincipalOut,
    RiskTier,
    ThreadCreate,
    ThreadCreated,
    ThreadId,
    ThreadStateOut,
    TurnOut,
)
from warden.service.sse import RunCancellation, attach_cancel_handler, run_streamed
from warden.service.views import (
    approval_view,
    internal_thread_id,
    may_decide,
    pending_approvals,
    results_out,
    thread_config,
    thread_state,
)
from warden.settings import Settings

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
# Graph runs per worker process at once; further runs wait for a free slot.
MAX_CONCURRENT_RUNS = 32
WORKER_PID_HEADER = "X-Warden-Worker-Pid"
EVENT_STREAM = "text/event-stream"

_ERRORS = {
    401: {"model": ErrorOut, "description": "Missing, unknown or expired credential"},
    403: {"model": ErrorOut, "description": "The caller's role may not do this"},
    404: {"model": ErrorOut, "description": "No such thread for the caller's tenant"},
    422: {"description": "Invalid request; the detail names the field"},
}
_STREAM_RESPONSE = {
    "content": {EVENT_STREAM: {"schema": {"type": "string"}}},
    "description": "Events `token` {text}, `approval_pending` {approval}, `action_executed` {result}, "
    "`done` {status, answer}, or `error` {status, detail}",
}


class Runtimes:
    """One ``Warden`` per tenant, built on first use over shared services."""

    def __init__(self, settings: Settings, redis_url: str | None, store: Any, chat_model: Any, index: Any) -> None:
        self.settings = settings
        self._redis_url = redis_url
        self._store = store
        self._chat_model = chat_model
        self._index = index
        self._lock = threading.Lock()
        self._runtimes: dict[str, Warden] = {}
        self._owned: list[Warden] = []

    def add(self, warden: Warden) -> None:
        """Serve ``warden``'s tenant with a runtime the caller opened and will close."""
        self._runtimes[warden.settings.tenant] = warden

    def get(self, tenant: str) -> Warden:
        with self._lock:
            runtime = self._runtimes.get(tenant)
            if runtime is None:
                if self._redis_url is None:
                    raise ConfigurationError(
                        f"tenant {tenant!r} needs REDIS_URL: an injected runtime serves only its own tenant"
                    )
                settings = dataclasses.replace(self.settings, tenant=tenant)
                context = build_context(settings, self._store, chat_model=self._chat_model, index=self._index)
                runtime = Warden(settings, context, self._redis_url)
                self._runtimes[tenant] = runtime
                self._owned.append(runtime)
            return runtime

    def close(self) -> None:
        for runtime in self._owned:
            runtime.close()


@contextlib.contextmanager
def _open_services(settings: Settings, warden: Warden | None) -> Iterator[Runtimes]:
    if warden is not None:
        context = warden.context
        runtimes = Runtimes(settings, settings.redis_url, context.store, context.chat_model, context.index)
        runtimes.add(warden)
        try:
            yield runtimes
        finally:
            runtimes.close()
        return
    store = open_store(settings)
    # WARDEN_RETRIEVAL_K=0 retrieves nothing, so the index (and torch) is not loaded.
    index = open_index(settings) if settings.retrieval_k > 0 else None
    chat_model = chat_model_from_settings(settings)
    with open_redis(settings) as redis_url:
        runtimes = Runtimes(settings, redis_url, store, chat_model, index)
        try:
            yield runtimes
        finally:
            runtimes.close()


def _services(request: Request) -> Runtimes:
    return request.app.state.runtimes


_bearer = HTTPBearer(auto_error=False, description="An API key or an HS256 token signed with WARDEN_TOKEN_SECRET")


def authenticate(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """Return the caller's principal; raise 401 when the bearer credential is missing or invalid."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise HTTPException(401, "missing credential; send 'Authorization: Bearer <API key or token>'", challenge)
    try:
        return request.app.state.authenticator.authenticate(credentials.credentials)
    except AuthenticationError as error:
        logger.info("authentication failed reason=%s path=%s", error, request.url.path)
        raise HTTPException(401, f"authentication failed: {error}", challenge) from None


Caller = Annotated[Principal, Depends(authenticate)]
ThreadPath = Annotated[ThreadId, PathParam(description="Thread id, unique within the caller's tenant")]


def _require_customer_channel(principal: Principal) -> None:
    if not (principal.is_customer or principal.is_admin):
        raise HTTPException(403, f"role {principal.role!r} may not send customer messages; use a customer key")


def _require_reviewer(principal: Principal) -> None:
    if not principal.is_reviewer:
        raise HTTPException(403, f"role {principal.role!r} may not review approvals; use a reviewer key")


def _threads_key(tenant: str) -> str:
    return f"warden:{tenant}:service:threads"


def _existing_thread(runtime: Warden, principal: Principal, thread_id: str) -> str:
    """Return the internal id of the caller's thread; raise 404 when the tenant has none by that id."""
    if not runtime.redis.hexists(_threads_key(principal.tenant), thread_id):
        raise HTTPException(404, f"thread {thread_id!r} not found")
    return internal_thread_id(principal.tenant, thread_id)


def _error_status(error: Exception) -> int:
    if isinstance(error, ReviewerNotAllowedError):
        return 403
    if isinstance(error, (ApprovalConflictError, ApprovalExpiredError, ThreadStateError)):
        return 409
    if isinstance(error, (ResumeError, ValueError)):
        return 422
    return 500


def _turn_out(runtime: Warden, principal: Principal, internal: str, outcome: TurnOutcome) -> TurnOut:
    values = runtime.graph.get_state(thread_config(internal)).values or {}
    approval = None
    if outcome.status == "awaiting_approval" and outcome.interrupt is not None:
        approval = approval_view(runtime, principal, principal.tenant, internal, outcome.interrupt, values)
    return TurnOut(
        thread_id=internal.partition("/")[2],
        status=outcome.status,
        answer=outcome.answer,
        results=results_out(values) if outcome.status == "answered" else [],
        approval=approval,
    )


def _event(name: str, data: Any) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(data, default=str), event=name)


async def _turn_events(
    request: Request,
    runtime: Warden,
    principal: Principal,
    internal: str,
    run: Callable[[Callable[[str], None]], Any],
    *,
    cancel_on_disconnect: bool,
) -> AsyncIterator[ServerSentEvent]:
    """Stream ``run``'s events; with ``cancel_on_disconnect``, a disconnect stops the run."""
    cancellation = RunCancellation(request.app.state.cancel_handler, internal)

    def on_disconnect() -> None:
        if cancel_on_disconnect:
            cancellation.cancel()
        else:
            logger.info("stream client disconnected, run continues thread_id=%s", internal)

    stream = run_streamed(
        request.app.state.executor,
        run,
        on_cancel=on_disconnect,
        on_finish=cancellation.finish,
    )
    async for kind, value in stream:
        if kind == "token":
            yield _event("token", {"text": value})
            continue
        if kind == "error":
            status = _error_status(value)
            if status == 500:
                logger.error("turn failed thread_id=%s", internal, exc_info=value)
                detail = "the turn failed on the server; see the service log"
            else:
                detail = str(value)
            yield _event("error", {"status": status, "detail": detail})
            return
        turn = await run_in_threadpool(_turn_out, runtime, principal, internal, value)
        if turn.approval is not None:
            yield _event("approval_pending", turn.approval.model_dump(mode="json"))
        for result in turn.results:
            if result.status == "done":
                yield _event("action_executed", result.model_dump(mode="json"))
        yield _event("done", {"thread_id": turn.thread_id, "status": turn.status, "answer": turn.answer})


def create_app(settings: Settings, *, warden: Warden | None = None) -> FastAPI:
    """Build the service for ``settings``; with ``warden``, serve that open runtime.

    Raises ``ConfigurationError`` when no API key or token secret is configured.
    """
    review_roles = {role for roles in settings.review_roles.values() for role in roles}
    authenticator = Authenticator(settings.api_keys, settings.token_secret, review_roles)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with _open_services(settings, warden) as runtimes, ThreadPoolExecutor(
            MAX_CONCURRENT_RUNS, thread_name_prefix="warden-run"
        ) as executor:
            app.state.runtimes = runtimes
            app.state.executor = executor
            app.state.cancel_handler = attach_cancel_handler(runtimes.get(settings.tenant).context.chat_model)
            logger.info("service started pid=%d tenant=%s", os.getpid(), settings.tenant)
            yield
            logger.info("service stopping pid=%d", os.getpid())

    app = FastAPI(
        title="Warden",
        version="0.1.0",
        description="Governed customer-support agent: streamed conversations and reviewer approvals.",
        lifespan=lifespan,
    )
    app.state.authenticator = authenticator
    app.state.settings = settings

    @app.middleware("http")
    async def worker_pid(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers[WORKER_PID_HEADER] = str(os.getpid())
        return response

    @app.exception_handler(ConfigurationError)
    async def configuration_error(request: Request, error: ConfigurationError) -> JSONResponse:
        logger.error("configuration error path=%s: %s", request.url.path, error)
        return JSONResponse({"detail": f"service misconfigured: {error}"}, status_code=503)

    _add_routes(app, settings)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _add_routes(app: FastAPI, settings: Settings) -> None:
    @app.get("/healthz", tags=["service"])
    def health() -> dict[str, str]:
        """Report that the worker is up; needs no credential."""
        return {"status": "ok"}

    @app.get("/inbox", include_in_schema=False)
    def inbox() -> FileResponse:
        return FileResponse(STATIC_DIR / "inbox.html")

    @app.get("/v1/me", response_model=PrincipalOut, responses=_ERRORS, tags=["service"])
    def me(principal: Caller) -> PrincipalOut:
        """Return the caller's subject, role and tenant as authenticated from the credential."""
        return PrincipalOut(subject=principal.subject, role=principal.role, tenant=principal.tenant)

    @app.post("/v1/threads", status_code=201, response_model=ThreadCreated, tags=["threads"],
              responses={**_ERRORS, 409: {"model": ErrorOut, "description": "The thread id is taken"}})
    def create_thread(request: Request, principal: Caller, body: ThreadCreate | None = None) -> ThreadCreated:
        """Create a conversation thread of the caller's tenant."""
        _require_customer_channel(principal)
        runtime = _services(request).get(principal.tenant)
        thread_id = (body.thread_id if body else None) or f"t-{secrets.token_hex(8)}"
        created_at = datetime.now(timezone.utc)
        record = json.dumps({"created_at": created_at.isoformat(), "created_by": principal.subject})
        if not runtime.redis.hsetnx(_threads_key(principal.tenant), thread_id, record):
            raise HTTPException(409, f"thread {thread_id!r} already exists; choose another id or omit it")
        logger.info("thread created tenant=%s thread_id=%s", principal.tenant, thread_id)
        return ThreadCreated(thread_id=thread_id, created_at=created_at)

    @app.get("/v1/threads/{thread_id}", response_model=ThreadStateOut, responses=_ERRORS, tags=["threads"])
    def get_thread(request: Request, principal: Caller, thread_id: ThreadPath) -> ThreadStateOut:
        """Return the thread's status, messages, last answer and pending approval."""
        runtime = _services(request).get(principal.tenant)
        internal = _existing_thread(runtime, principal, thread_id)
        return thread_state(runtime, principal, principal.tenant, internal)

    @app.get("/v1/threads/{thread_id}/history", response_model=HistoryOut, responses=_ERRORS, tags=["threads"])
    def get_history(request: Request, principal: Caller, thread_id: ThreadPath) -> HistoryOut:
        """Return the thread's checkpoints, oldest first, and its approval audit events."""
        runtime = _services(request).get(principal.tenant)
        internal = _existing_thread(runtime, principal, thread_id)
        return HistoryOut(thread_id=thread_id, checkpoints=runtime.history(internal), audit=runtime.ledger.events(internal))

    @app.post("/v1/threads/{thread_id}/messages", tags=["threads"],
              responses={**_ERRORS, 200: _STREAM_RESPONSE,
                         409: {"model": ErrorOut, "description": "The thread waits for approval"}})
    async def post_message(request: Request, principal: Caller, thread_id: ThreadPath, body: MessageIn) -> EventSourceResponse:
        """Send a customer message and stream the answer as Server-Sent Events.

        The answer enters the thread's history only when the run completes; a
        client that disconnects mid-answer leaves no partial answer behind.
        """
        _require_customer_channel(principal)
        runtime = _services(request).get(principal.tenant)
        internal = await run_in_threadpool(_existing_thread, runtime, principal, thread_id)
        request_pending = await run_in_threadpool(runtime.current_interrupt, internal)
        if request_pending is not None:
            raise HTTPException(409, f"thread {thread_id!r} is waiting for approval; a reviewer must decide first")

        def run(on_token: Callable[[str], None]) -> TurnOutcome:
            return runtime.send(internal, body.text, on_token=on_token)

        return EventSourceResponse(
            _turn_events(request, runtime, principal, internal, run, cancel_on_disconnect=True), ping=15
        )

    @app.post("/v1/threads/{thread_id}/cancel", response_model=TurnOut, tags=["threads"],
              responses={**_ERRORS, 409: {"model": ErrorOut, "description": "Nothing is pending"}})
    def cancel_pending(request: Request, principal: Caller, thread_id: ThreadPath) -> TurnOut:
        """Withdraw the thread's pending actions before a reviewer decides; the agent then answers."""
        _require_customer_channel(principal)
        runtime = _services(request).get(principal.tenant)
        internal = _existing_thread(runtime, principal, thread_id)
        try:
            outcome = runtime.cancel_pending(internal, reviewer=principal.subject)
        except ThreadStateError as error:
            raise HTTPException(409, str(error)) from None
        logger.info("pending actions withdrawn tenant=%s thread_id=%s", principal.tenant, thread_id)
        return _turn_out(runtime, principal, internal, outcome)

    @app.get("/v1/approvals", response_model=list[ApprovalOut], responses=_ERRORS, tags=["approvals"])
    def list_approvals(
        request: Request,
        principal: Caller,
        tenant: Annotated[str | None, Query(description="Defaults to, and must equal, the caller's tenant")] = None,
        role: Annotated[str | None, Query(description="Only what this reviewer role may decide")] = None,
        risk: Annotated[RiskTier | None, Query(description="Only requests whose highest risk is this")] = None,
        min_age_seconds: Annotated[float, Query(ge=0, le=1e9)] = 0.0,
        max_age_seconds: Annotated[float | None, Query(ge=0, le=1e9)] = None,
    ) -> list[ApprovalOut]:
        """List pending approvals the caller may decide, oldest first; expired ones are marked."""
        _require_reviewer(principal)
        if tenant is not None and tenant != principal.tenant:
            raise HTTPException(403, f"a credential of tenant {principal.tenant!r} may not list another tenant")
        known_roles = {r for roles in settings.review_roles.values() for r in roles}
        if role is not None and role not in known_roles:
            raise HTTPException(422, f"query parameter 'role' must be one of {sorted(known_roles)}, got {role!r}")
        runtime = _services(request).get(principal.tenant)
        return pending_approvals(
            runtime, principal, principal.tenant,
            role=role, min_age_seconds=min_age_seconds, max_age_seconds=max_age_seconds, risk=risk,
        )

    @app.get("/v1/approvals/{thread_id}", response_model=ApprovalOut, responses=_ERRORS, tags=["approvals"])
    def get_approval(request: Request, principal: Caller, thread_id: ThreadPath) -> ApprovalOut:
        """Return a paused thread's request with the customer message, plan, verdicts and cited text."""
        _require_reviewer(principal)
        runtime = _services(request).get(principal.tenant)
        internal = _existing_thread(runtime, principal, thread_id)
        pending = runtime.current_interrupt(internal)
        if pending is None:
            raise HTTPException(404, f"thread {thread_id!r} has no pending approval")
        values = runtime.graph.get_state(thread_config(internal)).values or {}
        return approval_view(runtime, principal, principal.tenant, internal, pending, values)

    @app.post("/v1/approvals/{thread_id}/decisions", response_model=TurnOut, tags=["approvals"],
              responses={**_ERRORS, 200: {"content": {EVENT_STREAM: {"schema": {"type": "string"}}}},
                         409: {"model": ErrorOut, "description": "Already decided, expired, or nothing pending"}})
    async def decide(request: Request, principal: Caller, thread_id: ThreadPath, body: DecisionsIn) -> Any:
        """Decide the waiting actions of a paused thread as the caller, then resume it.

        Answers JSON, or Server-Sent Events when the request accepts
        ``text/event-stream``. Every waiting action needs a decision. The
        answer is for the customer, so a reviewer who disconnects mid-stream
        does not stop the run. The run completes and stores the answer in the
        thread.
        """
        _require_reviewer(principal)
        runtime = _services(request).get(principal.tenant)
        internal = await run_in_threadpool(_existing_thread, runtime, principal, thread_id)
        pending = await run_in_threadpool(runtime.current_interrupt, internal)
        if pending is None:
            raise HTTPException(409, f"thread {thread_id!r} has no pending approval")
        risks = {action["action_id"]: action["risk"] for action in pending["actions"]}
        for action_id in body.decisions:
            risk = risks.get(action_id)
            if risk is not None and not may_decide(principal, risk, settings.review_roles):
                raise HTTPException(403, f"role {principal.role!r} may not decide {risk}-risk action {action_id!r}")
        claimed_role = None if principal.is_admin else principal.role
        decisions = {
            action_id: {**decision.model_dump(exclude_none=True), "reviewer": principal.subject, "role": claimed_role}
            for action_id, decision in body.decisions.items()
        }

        def run(on_token: Callable[[str], None] | None = None) -> TurnOutcome:
            return runtime.decide(internal, decisions, on_token=on_token)

        if EVENT_STREAM in request.headers.get("accept", ""):
            return EventSourceResponse(
                _turn_events(request, runtime, principal, internal, run, cancel_on_disconnect=False), ping=15
            )
        try:
            outcome = await run_in_threadpool(run)
        except (ResumeError, ThreadStateError) as error:
            raise HTTPException(_error_status(error), str(error)) from None
        logger.info("decisions applied tenant=%s thread_id=%s reviewer=%s", principal.tenant, thread_id, principal.subject)
        return await run_in_threadpool(_turn_out, runtime, principal, internal, outcome)


def app_from_env() -> FastAPI:
    """Build the service from ``Settings.from_env()``; the factory each uvicorn worker calls."""
    return create_app(Settings.from_env())
