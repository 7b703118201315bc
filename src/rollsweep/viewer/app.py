"""The viewer's web app: a JSON API over indexed rollout files and one static page.

Sources are rollout files: one, two (compare), or every ``rollouts*.jsonl`` under a pipeline
experiment directory (``results/{experiment}/{param~value...}/rollouts.jsonl``), labelled by
their directory. All rollout content reaches the page as JSON and is rendered with
``textContent``; the page is served with a strict Content-Security-Policy (scripts only from
this server, no inline script), so a rollout that contains ``<script>`` shows as text.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.middleware.trustedhost import TrustedHostMiddleware

from rollsweep.errors import UsageError
from rollsweep.rollouts.names import is_failures_file
from rollsweep.rollouts.text import final_output, prompt_text
from rollsweep.viewer import query
from rollsweep.viewer.index import RolloutIndex, check_rollouts_file

STATIC = Path(__file__).resolve().parent / "static"
MAX_PAGE = 500

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


# --------------------------------------------------------------------------- sources


@dataclass
class Source:
    id: int
    label: str
    path: Path
    index: RolloutIndex

    def describe(self) -> dict[str, Any]:
        status = self.index.status()
        mean = None
        if status["complete"] and status["rows"]:
            mean = query._finite(self.index.snapshot().get_column("reward").mean())
        return {"id": self.id, "label": self.label, "path": str(self.path), "mean": mean, **status}


def _natural_key(label: str) -> list[Any]:
    parts: list[Any] = []
    for piece in re.split(r"([/~])", label):
        try:
            parts.append((0, float(piece), ""))
        except ValueError:
            parts.append((1, 0.0, piece))
    return parts


def _is_rollouts_file(path: Path) -> bool:
    name = path.name
    return (
        path.is_file()
        and name.startswith("rollouts")
        and name.endswith(".jsonl")
        and not is_failures_file(name)
        and not name.startswith(".")
    )


def discover(paths: list[str | Path]) -> list[tuple[str, Path]]:
    """(label, file) for each file given, or for each rollouts file under a directory given.

    A directory is a pipeline experiment: its files are labelled by their directory relative
    to it (``temperature~0.5``), with the file's stem added when it is not ``rollouts``.
    """
    found: list[tuple[str, Path]] = []
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.rglob("rollouts*.jsonl") if _is_rollouts_file(p))
            if not files:
                raise UsageError(
                    "no rollouts*.jsonl file below this directory (expected a pipeline "
                    "experiment such as results/temperature_sweep, or a JSONL file)",
                    path=str(path),
                )
            labelled = []
            for file in files:
                relative = file.parent.relative_to(path).as_posix()
                label = "." if relative == "." else relative
                if file.stem != "rollouts":
                    label = file.stem if label == "." else f"{label}:{file.stem}"
                labelled.append((label, file))
            found.extend(sorted(labelled, key=lambda item: _natural_key(item[0])))
        else:
            check_rollouts_file(path)
            found.append((path.name, path))
    labels = [label for label, _ in found]
    if len(set(labels)) < len(labels):  # same file names: show their paths instead
        found = [(str(file), file) for _, file in found]
    return found


class Workspace:
    """The sources a viewer shows, each indexed once in the background."""

    def __init__(self, paths: list[str | Path], *, compare: bool | None = None) -> None:
        self.paths = [str(p) for p in paths]
        self.sources = [
            Source(number, label, file, RolloutIndex(file))
            for number, (label, file) in enumerate(discover(paths))
        ]
        self.compare = len(self.sources) == 2 if compare is None else compare
        self._lock = threading.Lock()
        self._cache: dict[tuple[Any, ...], Any] = {}
        # index every source, one at a time, the first ones first
        self._warm = threading.Thread(target=self._warm_all, name="index all", daemon=True)
        self._warm.start()

    def _warm_all(self) -> None:
        for source in self.sources:
            source.index.wait()

    def source(self, number: int) -> Source:
        if not 0 <= number < len(self.sources):
            raise HTTPException(404, f"no source {number} (there are {len(self.sources)})")
        source = self.sources[number]
        source.index.start()
        return source

    def reload(self, number: int) -> Source:
        with self._lock:
            old = self.source(number)
            old.index.wait()
            old.index.close()
            fresh = Source(old.id, old.label, old.path, RolloutIndex(old.path).start())
            self.sources[number] = fresh
            self._cache = {k: v for k, v in self._cache.items() if number not in k[1:3]}
            return fresh

    def cached(self, key: tuple[Any, ...], build: Any) -> Any:
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        value = build()
        with self._lock:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = value
        return value

    def close(self) -> None:
        for source in self.sources:
            source.index.wait(timeout=30)
            source.index.close()


# --------------------------------------------------------------------------- the app


def _bad_request(message: str) -> HTTPException:
    return HTTPException(status_code=400, detail=message)


def _page(offset: int, limit: int) -> tuple[int, int]:
    return max(0, offset), max(1, min(limit, MAX_PAGE))


def create_app(workspace: Workspace) -> FastAPI:
    """The viewer app over a workspace of sources."""
    app = FastAPI(title="rollsweep viewer", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(
        TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]", "::1"]
    )

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    # ---------------------------------------------------------------- helpers

    def snapshot(number: int) -> tuple[Source, pl.DataFrame]:
        source = workspace.source(number)
        return source, source.index.snapshot()

    def row_mask(source: Source, frame: pl.DataFrame, reward: str | None, q: str | None):
        """The filtered index frame (reward filter and text search)."""
        try:
            expr = query.parse_reward_filter(reward)
        except query.FilterError as error:
            raise _bad_request(str(error)) from None
        filtered = frame
        if q and q.strip():
            mask = source.index.search(q.strip(), frame)
            filtered = filtered.filter(pl.Series(mask))
        if expr is not None:
            filtered = filtered.filter(expr)
        return filtered

    def progress(source: Source, frame: pl.DataFrame) -> dict[str, Any]:
        status = source.index.status()
        return {"indexed": frame.height, "complete": status["complete"], "source": source.id}

    # ---------------------------------------------------------------- pages

    @app.get("/", include_in_schema=False)
    def index_page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        allowed = {"app.js": "text/javascript", "app.css": "text/css", "favicon.svg": None}
        if name not in allowed:
            raise HTTPException(404, "not found")
        media = allowed[name] or "image/svg+xml"
        return FileResponse(STATIC / name, media_type=f"{media}; charset=utf-8")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    # ---------------------------------------------------------------- API

    @app.get("/api/sources")
    def sources() -> dict[str, Any]:
        return {
            "sources": [source.describe() for source in workspace.sources],
            "compare": workspace.compare,
            "paths": workspace.paths,
        }

    @app.post("/api/reload")
    def reload(src: int = 0) -> dict[str, Any]:
        return workspace.reload(src).describe()

    @app.get("/api/rows")
    def rows(
        src: int = 0,
        reward: str | None = None,
        q: str | None = None,
        sort: str = "file",
        offset: int = 0,
        limit: int = 100,
    ) -> dict[str, Any]:
        source, frame = snapshot(src)
        filtered = row_mask(source, frame, reward, q)
        try:
            ordered = query.sort_frame(filtered, sort, query.ROW_SORTS)
        except query.FilterError as error:
            raise _bad_request(str(error)) from None
        offset, limit = _page(offset, limit)
        page = ordered.slice(offset, limit)
        bodies = source.index.read_many(page)
        return {
            **progress(source, frame),
            "total": frame.height,
            "matched": filtered.height,
            "offset": offset,
            "rows": [
                query.row_summary(meta, body)
                for meta, body in zip(page.to_dicts(), bodies, strict=True)
            ],
        }

    @app.get("/api/row/{i}")
    def row(i: int, src: int = 0) -> dict[str, Any]:
        source, frame = snapshot(src)
        if not 0 <= i < frame.height:
            raise HTTPException(404, f"no row {i} in {source.label} ({frame.height} indexed)")
        meta = frame.row(i, named=True)
        detail = query.row_detail(meta, source.index.read_at(meta["offset"], meta["length"]))
        keyed = query.with_task_key(frame.slice(i, 1))
        task_key = keyed.get_column("task_key")[0]
        groups = workspace.cached(("groups", src, frame.height), lambda: query.group_table(frame))
        siblings = groups.filter(pl.col("task_key") == task_key)
        detail["siblings"] = []
        detail["task_stats"] = None
        if siblings.height:
            group = siblings.row(0, named=True)
            detail["siblings"] = [
                {"i": m, "repeat": r, "reward": query._finite(w)}
                for m, r, w in zip(
                    group["members"], group["member_repeats"], group["member_rewards"], strict=True
                )
            ]
            detail["task_stats"] = {
                key: query._finite(group[key]) if key != "n" else group[key]
                for key in ("n", "mean", "std", "min", "max")
            }
        detail["source"] = source.id
        detail["source_label"] = source.label
        detail["path"] = str(source.path)
        return detail

    @app.get("/api/groups")
    def groups(
        src: int = 0,
        reward: str | None = None,
        q: str | None = None,
        sort: str = "task",
        offset: int = 0,
        limit: int = 100,
    ) -> dict[str, Any]:
        source, frame = snapshot(src)
        table = workspace.cached(("groups", src, frame.height), lambda: query.group_table(frame))
        filtered = row_mask(source, frame, reward, q)
        filtering = filtered.height != frame.height
        if filtering:
            keys = query.with_task_key(frame).filter(
                pl.col("i").is_in(filtered.get_column("i").implode())
            )
            table = table.filter(pl.col("task_key").is_in(keys.get_column("task_key").implode()))
        try:
            ordered = query.sort_frame(table, sort, query.GROUP_SORTS)
        except query.FilterError as error:
            raise _bad_request(str(error)) from None
        offset, limit = _page(offset, limit)
        page = ordered.slice(offset, limit)
        firsts = frame.filter(pl.col("i").is_in(page.get_column("first_i").implode())).sort("i")
        bodies = {
            meta["i"]: body
            for meta, body in zip(firsts.to_dicts(), source.index.read_many(firsts), strict=True)
        }
        matching: set[int] = set()
        if filtering:
            members = page.get_column("members").explode()
            matching = set(
                filtered.filter(pl.col("i").is_in(members.implode())).get_column("i").to_list()
            )
        out = []
        for group in page.to_dicts():
            body = bodies.get(group["first_i"], {})
            out.append(
                {
                    "task_key": group["task_key"],
                    "task_index": group["task_index"],
                    "task_id": group["task_id"],
                    "n": group["n"],
                    "mean": query._finite(group["mean"]),
                    "std": query._finite(group["std"]),
                    "min": query._finite(group["min"]),
                    "max": query._finite(group["max"]),
                    "prompt": query._clip(prompt_text(body)),
                    "repeats": [
                        {
                            "i": m,
                            "repeat": r,
                            "reward": query._finite(w),
                            "match": (m in matching) if filtering else True,
                        }
                        for m, r, w in zip(
                            group["members"],
                            group["member_repeats"],
                            group["member_rewards"],
                            strict=True,
                        )
                    ],
                }
            )
        return {
            **progress(source, frame),
            "total_groups": workspace.cached(
                ("group_count", src, frame.height), lambda: table.height
            )
            if not filtering
            else None,
            "matched": ordered.height,
            "offset": offset,
            "groups": out,
        }

    @app.get("/api/histogram")
    def histogram(src: int = 0, q: str | None = None) -> dict[str, Any]:
        source, frame = snapshot(src)
        filtered = row_mask(source, frame, None, q)
        return {**progress(source, frame), **query.histogram(filtered.get_column("reward"))}

    @app.get("/api/compare")
    def compare(
        a: int = 0,
        b: int = 1,
        view: str = "changed",
        sort: str = "file",
        q: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> dict[str, Any]:
        source_a, frame_a = snapshot(a)
        source_b, frame_b = snapshot(b)
        pairs = workspace.cached(
            ("pairs", a, b, frame_a.height, frame_b.height),
            lambda: query.pair_frames(frame_a, frame_b),
        )
        try:
            shown = query.compare_view(pairs, view)
            shown = query.sort_frame(shown, sort, query.COMPARE_SORTS)
        except query.FilterError as error:
            raise _bad_request(str(error)) from None
        if q and q.strip():
            hits_a = frame_a.filter(pl.Series(source_a.index.search(q.strip(), frame_a)))
            hits_b = frame_b.filter(pl.Series(source_b.index.search(q.strip(), frame_b)))
            shown = shown.filter(
                pl.col("i_a").is_in(hits_a.get_column("i").implode())
                | pl.col("i_b").is_in(hits_b.get_column("i").implode())
            )
        summary = workspace.cached(
            ("compare_summary", a, b, frame_a.height, frame_b.height),
            lambda: query.compare_summary(pairs, frame_a, frame_b),
        )
        offset, limit = _page(offset, limit)
        page = shown.slice(offset, limit)
        records = query.as_records(
            page,
            ["task_index", "repeat", "task_id", "i_a", "i_b", "reward_a", "reward_b", "delta"],
        )
        statuses = page.get_column("status").to_list()
        for record, status in zip(records, statuses, strict=True):
            record["status"] = status
            for side, source, frame in (("a", source_a, frame_a), ("b", source_b, frame_b)):
                i = record[f"i_{side}"]
                record[f"output_{side}"] = None
                if i is not None and i < frame.height:
                    meta = frame.row(i, named=True)
                    body = source.index.read_at(meta["offset"], meta["length"])
                    record[f"output_{side}"] = query._clip(final_output(body), 160)
                    if side == "a" or record.get("prompt") is None:
                        record["prompt"] = query._clip(prompt_text(body), 160)
        complete = source_a.index.complete and source_b.index.complete
        return {
            "a": source_a.id,
            "b": source_b.id,
            "label_a": source_a.label,
            "label_b": source_b.label,
            "complete": complete,
            "summary": summary,
            "matched": shown.height,
            "offset": offset,
            "rows": records,
            "histogram_a": query.histogram(frame_a.get_column("reward")),
            "histogram_b": query.histogram(frame_b.get_column("reward")),
        }

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": error.detail}, status_code=error.status_code)

    return app
