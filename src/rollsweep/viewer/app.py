"""The viewer's web app: a JSON API over indexed rollout files and one static page.

All rollout content reaches the page as JSON and is rendered with ``textContent``; the page is
served with a strict Content-Security-Policy (scripts only from this server, no inline script),
so a rollout that contains ``<script>`` shows as text. The routes find the workspace they show
in ``app.state.workspace``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import polars as pl
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.middleware.trustedhost import TrustedHostMiddleware

from rollsweep.rollouts.text import final_output, prompt_text
from rollsweep.viewer import query
from rollsweep.viewer.workspace import Source, Workspace

STATIC = Path(__file__).resolve().parent / "static"
MAX_PAGE = 500
STATIC_FILES = {"app.js": "text/javascript", "app.css": "text/css", "favicon.svg": "image/svg+xml"}

#: Scripts, styles and requests only from this server; nothing inline, no frames, no forms.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def create_app(workspace: Workspace) -> FastAPI:
    """The viewer app over a workspace of sources."""
    app = FastAPI(title="rollsweep viewer", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.workspace = workspace
    app.add_middleware(
        TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]", "::1"]
    )
    app.middleware("http")(security_headers)
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
    app.include_router(router)
    return app


async def security_headers(request: Request, call_next: Any) -> Response:
    response = await call_next(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


async def http_error(request: Request, error: HTTPException) -> JSONResponse:
    return JSONResponse({"error": error.detail}, status_code=error.status_code)


def _workspace(request: Request) -> Workspace:
    return request.app.state.workspace


CurrentWorkspace = Annotated[Workspace, Depends(_workspace)]
router = APIRouter()


# --------------------------------------------------------------------------- helpers


def _bad_request(message: str) -> HTTPException:
    return HTTPException(status_code=400, detail=message)


def _page(offset: int, limit: int) -> tuple[int, int]:
    return max(0, offset), max(1, min(limit, MAX_PAGE))


@dataclass
class ListQuery:
    """The query parameters of a paged list of one source's rows or task groups."""

    src: int = 0
    reward: str | None = None
    q: str | None = None
    sort: str | None = None  # None: the list's own order
    offset: int = 0
    limit: int = 100


Listing = Annotated[ListQuery, Depends()]


def _sorted(frame: pl.DataFrame, sort: str, sorts: dict[str, tuple[str, bool]]) -> pl.DataFrame:
    try:
        return query.sort_frame(frame, sort, sorts)
    except query.FilterError as error:
        raise _bad_request(str(error)) from None


def _snapshot(workspace: Workspace, number: int) -> tuple[Source, pl.DataFrame]:
    source = workspace.source(number)
    return source, source.index.snapshot()


def _search(source: Source, frame: pl.DataFrame, q: str | None) -> pl.DataFrame:
    """The rows of ``frame`` whose text contains ``q`` (all of them without a query)."""
    if not q or not q.strip():
        return frame
    return frame.filter(pl.Series(source.index.search(q.strip(), frame)))


def _filtered(
    source: Source, frame: pl.DataFrame, reward: str | None, q: str | None
) -> pl.DataFrame:
    """The index frame narrowed by the reward filter and the text search."""
    try:
        expr = query.parse_reward_filter(reward)
    except query.FilterError as error:
        raise _bad_request(str(error)) from None
    filtered = _search(source, frame, q)
    return filtered if expr is None else filtered.filter(expr)


def _progress(source: Source, frame: pl.DataFrame) -> dict[str, Any]:
    status = source.index.status()
    return {"indexed": frame.height, "complete": status["complete"], "source": source.id}


def _groups(workspace: Workspace, src: int, frame: pl.DataFrame) -> pl.DataFrame:
    return workspace.cached(("groups", src, frame.height), lambda: query.group_table(frame))


def _members(group: dict[str, Any]) -> list[dict[str, Any]]:
    """A task group's rollouts: row number, repeat and reward of each."""
    return [
        {"i": i, "repeat": repeat, "reward": query.finite(reward)}
        for i, repeat, reward in zip(
            group["members"], group["member_repeats"], group["member_rewards"], strict=True
        )
    ]


def _stats(group: dict[str, Any]) -> dict[str, Any]:
    return {
        "n": group["n"],
        **{key: query.finite(group[key]) for key in ("mean", "std", "min", "max")},
    }


# --------------------------------------------------------------------------- pages


@router.get("/", include_in_schema=False)
def index_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


@router.get("/static/{name}", include_in_schema=False)
def static(name: str) -> FileResponse:
    if name not in STATIC_FILES:
        raise HTTPException(404, "not found")
    return FileResponse(STATIC / name, media_type=f"{STATIC_FILES[name]}; charset=utf-8")


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> FileResponse:
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")


@router.get("/api/health")
def health() -> dict[str, Any]:
    return {"status": "ok"}


# --------------------------------------------------------------------------- sources and rows


@router.get("/api/sources")
def sources(workspace: CurrentWorkspace) -> dict[str, Any]:
    return {
        "sources": [source.describe() for source in workspace.sources],
        "compare": workspace.compare,
        "paths": workspace.paths,
    }


@router.post("/api/reload")
def reload(workspace: CurrentWorkspace, src: int = 0) -> dict[str, Any]:
    return workspace.reload(src).describe()


@router.get("/api/rows")
def rows(workspace: CurrentWorkspace, listing: Listing) -> dict[str, Any]:
    source, frame = _snapshot(workspace, listing.src)
    filtered = _filtered(source, frame, listing.reward, listing.q)
    ordered = _sorted(filtered, listing.sort or "file", query.ROW_SORTS)
    offset, limit = _page(listing.offset, listing.limit)
    page = ordered.slice(offset, limit)
    bodies = source.index.read_many(page)
    return {
        **_progress(source, frame),
        "total": frame.height,
        "matched": filtered.height,
        "offset": offset,
        "rows": [
            query.row_summary(meta, body)
            for meta, body in zip(page.to_dicts(), bodies, strict=True)
        ],
    }


@router.get("/api/row/{i}")
def row(workspace: CurrentWorkspace, i: int, src: int = 0) -> dict[str, Any]:
    source, frame = _snapshot(workspace, src)
    if not 0 <= i < frame.height:
        raise HTTPException(404, f"no row {i} in {source.label} ({frame.height} indexed)")
    meta = frame.row(i, named=True)
    detail = query.row_detail(meta, source.index.read_at(meta["offset"], meta["length"]))
    task_key = query.with_task_key(frame.slice(i, 1)).get_column("task_key")[0]
    siblings = _groups(workspace, src, frame).filter(pl.col("task_key") == task_key)
    group = siblings.row(0, named=True) if siblings.height else None
    detail["siblings"] = _members(group) if group else []
    detail["task_stats"] = _stats(group) if group else None
    detail["source"] = source.id
    detail["source_label"] = source.label
    detail["path"] = str(source.path)
    return detail


@router.get("/api/histogram")
def histogram(workspace: CurrentWorkspace, src: int = 0, q: str | None = None) -> dict[str, Any]:
    source, frame = _snapshot(workspace, src)
    filtered = _search(source, frame, q)
    return {**_progress(source, frame), **query.histogram(filtered.get_column("reward"))}


# --------------------------------------------------------------------------- task groups


def _groups_matching(table: pl.DataFrame, frame: pl.DataFrame, kept: pl.DataFrame) -> pl.DataFrame:
    """The task groups with at least one rollout among the ``kept`` rows."""
    keys = query.with_task_key(frame).filter(pl.col("i").is_in(kept.get_column("i").implode()))
    return table.filter(pl.col("task_key").is_in(keys.get_column("task_key").implode()))


def _first_bodies(source: Source, frame: pl.DataFrame, page: pl.DataFrame) -> dict[int, Any]:
    """Row number -> body of each group's first rollout (its prompt is the group's)."""
    firsts = frame.filter(pl.col("i").is_in(page.get_column("first_i").implode())).sort("i")
    return dict(zip(firsts.get_column("i").to_list(), source.index.read_many(firsts), strict=True))


def _group_record(
    group: dict[str, Any], body: dict[str, Any], matching: set[int] | None
) -> dict[str, Any]:
    """One group as the page shows it; ``matching``: rows passing the filters, None = all."""
    repeats = _members(group)
    for repeat in repeats:
        repeat["match"] = matching is None or repeat["i"] in matching
    return {
        "task_key": group["task_key"],
        "task_index": group["task_index"],
        "task_id": group["task_id"],
        **_stats(group),
        "prompt": query.clip(prompt_text(body)),
        "repeats": repeats,
    }


@router.get("/api/groups")
def groups(workspace: CurrentWorkspace, listing: Listing) -> dict[str, Any]:
    source, frame = _snapshot(workspace, listing.src)
    table = _groups(workspace, listing.src, frame)
    filtered = _filtered(source, frame, listing.reward, listing.q)
    filtering = filtered.height != frame.height
    if filtering:
        table = _groups_matching(table, frame, filtered)
    ordered = _sorted(table, listing.sort or "task", query.GROUP_SORTS)
    offset, limit = _page(listing.offset, listing.limit)
    page = ordered.slice(offset, limit)
    bodies = _first_bodies(source, frame, page)
    matching = None
    if filtering:
        members = page.get_column("members").explode().implode()
        matching = set(filtered.filter(pl.col("i").is_in(members)).get_column("i").to_list())
    return {
        **_progress(source, frame),
        "total_groups": None if filtering else table.height,
        "matched": ordered.height,
        "offset": offset,
        "groups": [
            _group_record(group, bodies.get(group["first_i"], {}), matching)
            for group in page.to_dicts()
        ],
    }


# --------------------------------------------------------------------------- compare

COMPARE_COLUMNS = ["task_index", "repeat", "task_id", "i_a", "i_b", "reward_a", "reward_b", "delta"]


def _add_texts(record: dict[str, Any], side: str, source: Source, frame: pl.DataFrame) -> None:
    """A compared pair's output on ``side`` and, from the first side that has it, its prompt."""
    i = record[f"i_{side}"]
    record[f"output_{side}"] = None
    if i is None or i >= frame.height:
        return
    meta = frame.row(i, named=True)
    body = source.index.read_at(meta["offset"], meta["length"])
    record[f"output_{side}"] = query.clip(final_output(body), 160)
    if side == "a" or record.get("prompt") is None:
        record["prompt"] = query.clip(prompt_text(body), 160)


def _pairs(
    workspace: Workspace,
    side_a: tuple[Source, pl.DataFrame],
    side_b: tuple[Source, pl.DataFrame],
    view: str,
    sort: str,
    q: str | None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The pairs of the two sides in ``view``, sorted, narrowed by the text search; the summary."""
    (source_a, frame_a), (source_b, frame_b) = side_a, side_b
    key = (source_a.id, source_b.id, frame_a.height, frame_b.height)
    pairs = workspace.cached(("pairs", *key), lambda: query.pair_frames(frame_a, frame_b))
    try:
        shown = query.compare_view(pairs, view)
    except query.FilterError as error:
        raise _bad_request(str(error)) from None
    shown = _sorted(shown, sort, query.COMPARE_SORTS)
    if q and q.strip():
        hits_a = _search(source_a, frame_a, q).get_column("i").implode()
        hits_b = _search(source_b, frame_b, q).get_column("i").implode()
        shown = shown.filter(pl.col("i_a").is_in(hits_a) | pl.col("i_b").is_in(hits_b))
    summary = workspace.cached(
        ("compare_summary", *key), lambda: query.compare_summary(pairs, frame_a, frame_b)
    )
    return shown, summary


@router.get("/api/compare")
def compare(
    workspace: CurrentWorkspace,
    a: int = 0,
    b: int = 1,
    view: str = "changed",
    sort: str = "file",
    q: str | None = None,
    offset: int = 0,
    limit: int = 100,
) -> dict[str, Any]:
    (source_a, frame_a), (source_b, frame_b) = _snapshot(workspace, a), _snapshot(workspace, b)
    shown, summary = _pairs(workspace, (source_a, frame_a), (source_b, frame_b), view, sort, q)
    offset, limit = _page(offset, limit)
    page = shown.slice(offset, limit)
    records = query.as_records(page, COMPARE_COLUMNS)
    for record, status in zip(records, page.get_column("status").to_list(), strict=True):
        record["status"] = status
        _add_texts(record, "a", source_a, frame_a)
        _add_texts(record, "b", source_b, frame_b)
    return {
        "a": source_a.id,
        "b": source_b.id,
        "label_a": source_a.label,
        "label_b": source_b.label,
        "complete": source_a.index.complete and source_b.index.complete,
        "summary": summary,
        "matched": shown.height,
        "offset": offset,
        "rows": records,
        "histogram_a": query.histogram(frame_a.get_column("reward")),
        "histogram_b": query.histogram(frame_b.get_column("reward")),
    }
