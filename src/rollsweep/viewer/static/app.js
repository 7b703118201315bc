// rollsweep viewer. Vanilla JS, no build step, no network beyond this server.
// Everything that comes from a rollout is put in the page with textContent (through el()),
// never parsed as HTML; the server's Content-Security-Policy forbids inline script besides.
"use strict";

(() => {
  const ROW_HEIGHT = 34;
  const GROUP_HEIGHT = 40;
  const PAGE = 100;
  const MAX_SCROLL_PX = 8_000_000;

  // ------------------------------------------------------------------ DOM helpers

  const $ = (id) => document.getElementById(id);

  /** Create an element. Strings become text nodes: nothing is ever parsed as HTML. */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [key, value] of Object.entries(props)) {
        if (value === null || value === undefined || value === false) continue;
        if (key === "class") node.className = value;
        else if (key === "text") node.textContent = String(value);
        else if (key === "dataset") Object.assign(node.dataset, value);
        else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
        else node.setAttribute(key, value === true ? "" : String(value));
      }
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function show(node, visible) {
    node.classList.toggle("hidden", !visible);
  }

  // ------------------------------------------------------------------ formatting

  function fmtReward(value) {
    if (value === null || value === undefined) return "—";
    if (Number.isInteger(value)) return value.toFixed(1);
    const text = String(Math.round(value * 1000) / 1000);
    return text;
  }

  function fmtNum(value, digits = 3) {
    if (value === null || value === undefined || Number.isNaN(value)) return "—";
    return Number(value).toFixed(digits);
  }

  function fmtInt(value) {
    return value === null || value === undefined ? "—" : Number(value).toLocaleString("en-US");
  }

  function rewardColor(value) {
    if (value === null || value === undefined) return null;
    // red (0) -> amber (0.5) -> green (1)
    const r = Math.max(0, Math.min(1, value));
    const hue = r < 0.5 ? r * 2 * 36 : 36 + (r - 0.5) * 2 * (140 - 36);
    const light = r < 0.5 ? 46 : 44 - (r - 0.5) * 2 * 6;
    return `hsl(${Math.round(hue)} 72% ${Math.round(light)}%)`;
  }

  function badge(value, extra) {
    const node = el("span", { class: `badge ${extra || ""}`, text: fmtReward(value) });
    const color = rewardColor(value);
    if (color) node.style.background = color;
    else node.classList.add("missing");
    return node;
  }

  function compact(value) {
    if (value === null || value === undefined) return "—";
    if (typeof value === "string") return value;
    return JSON.stringify(value);
  }

  // ------------------------------------------------------------------ API

  async function api(path, params) {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== null && value !== undefined && value !== "") query.set(key, String(value));
    }
    const url = query.toString() ? `${path}?${query}` : path;
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const message = body && body.error ? body.error : `${response.status} ${response.statusText}`;
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  // ------------------------------------------------------------------ state

  const state = {
    mode: "rows",
    src: 0,
    a: 0,
    b: 1,
    reward: "",
    q: "",
    sort: "file",
    gsort: "task",
    view: "changed",
    cq: "",
    csort: "file",
  };
  let sources = [];
  let workspace = null;
  let openItem = null; // {position} of the open row in the current list

  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    for (const key of Object.keys(state)) {
      if (!params.has(key)) continue;
      const value = params.get(key);
      state[key] = ["src", "a", "b"].includes(key) ? Number(value) || 0 : value;
    }
    return params.toString() !== "";
  }

  function writeHash() {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(state)) {
      if (value !== "" && value !== null) params.set(key, String(value));
    }
    history.replaceState(null, "", `#${params}`);
  }

  // ------------------------------------------------------------------ virtual list

  class VirtualList {
    constructor(viewport, spacer, rows) {
      this.viewport = viewport;
      this.spacer = spacer;
      this.rowsNode = rows;
      this.total = 0;
      this.height = ROW_HEIGHT;
      this.pages = new Map();
      this.generation = 0;
      this.fetchPage = null;
      this.renderRow = null;
      this.onTotal = null;
      this.pending = false;
      viewport.addEventListener("scroll", () => this.schedule());
      window.addEventListener("resize", () => this.schedule());
    }

    reset(fetchPage, renderRow, height) {
      this.generation += 1;
      this.pages = new Map();
      this.fetchPage = fetchPage;
      this.renderRow = renderRow;
      this.height = height;
      this.total = 0;
      this.viewport.scrollTop = 0;
      this.rowsNode.replaceChildren();
      this.setTotal(0);
      return this.load(0);
    }

    /** Forget loaded pages (the file is still being indexed) but keep the scroll position. */
    refresh() {
      this.generation += 1;
      this.pages = new Map();
      this.schedule();
    }

    setTotal(total) {
      this.total = total;
      const full = total * this.height;
      this.spacer.style.height = `${Math.min(full, MAX_SCROLL_PX)}px`;
      if (this.onTotal) this.onTotal(total);
    }

    schedule() {
      if (this.pending) return;
      this.pending = true;
      requestAnimationFrame(() => {
        this.pending = false;
        this.render();
      });
    }

    load(page) {
      if (this.pages.has(page)) return this.pages.get(page).promise;
      const generation = this.generation;
      const entry = { rows: null, promise: null };
      entry.promise = this.fetchPage(page * PAGE, PAGE)
        .then((result) => {
          if (generation !== this.generation) return;
          entry.rows = result.rows;
          if (result.total !== this.total) this.setTotal(result.total);
          this.schedule();
        })
        .catch((error) => {
          if (generation !== this.generation) return;
          this.pages.delete(page);
          reportError(error);
        });
      this.pages.set(page, entry);
      return entry.promise;
    }

    item(position) {
      const entry = this.pages.get(Math.floor(position / PAGE));
      return entry && entry.rows ? entry.rows[position % PAGE] : undefined;
    }

    async itemAsync(position) {
      if (position < 0 || position >= this.total) return undefined;
      await this.load(Math.floor(position / PAGE));
      return this.item(position);
    }

    geometry() {
      const viewHeight = this.viewport.clientHeight;
      const full = this.total * this.height;
      const shown = Math.min(full, MAX_SCROLL_PX);
      const scrollTop = this.viewport.scrollTop;
      // past MAX_SCROLL_PX the scrollbar maps proportionally onto the rows
      const virtualTop =
        full > shown && shown > viewHeight
          ? (scrollTop / (shown - viewHeight)) * (full - viewHeight)
          : scrollTop;
      return { viewHeight, scrollTop, virtualTop };
    }

    render() {
      if (!this.renderRow) return;
      const { viewHeight, scrollTop, virtualTop } = this.geometry();
      const first = Math.max(0, Math.floor(virtualTop / this.height) - 10);
      const last = Math.min(this.total, Math.ceil((virtualTop + viewHeight) / this.height) + 10);
      const nodes = [];
      for (let position = first; position < last; position += 1) {
        const page = Math.floor(position / PAGE);
        if (!this.pages.has(page)) this.load(page);
        const item = this.item(position);
        const top = position * this.height - virtualTop + scrollTop;
        let node;
        if (item === undefined) {
          node = el("div", { class: "vrow loading" }, el("span", { class: "cell", text: "…" }));
        } else {
          node = this.renderRow(item, position);
          node.dataset.position = String(position);
          if (openItem && openItem.position === position) node.classList.add("active");
        }
        node.style.top = `${top}px`;
        node.style.height = `${this.height}px`;
        nodes.push(node);
      }
      this.rowsNode.replaceChildren(...nodes);
    }

    scrollToPosition(position) {
      const { viewHeight, virtualTop } = this.geometry();
      const top = position * this.height;
      if (top < virtualTop) this.viewport.scrollTop -= virtualTop - top;
      else if (top + this.height > virtualTop + viewHeight)
        this.viewport.scrollTop += top + this.height - (virtualTop + viewHeight);
    }
  }

  const list = new VirtualList($("viewport"), $("spacer"), $("rows"));

  // ------------------------------------------------------------------ errors and banners

  function reportError(error) {
    const banner = $("banner");
    banner.replaceChildren(el("strong", { text: "error: " }), error.message || String(error));
    banner.className = "banner error";
  }

  function setFilterError(message) {
    const box = $("filter-error");
    box.textContent = message || "";
    show(box, Boolean(message));
    $("reward-filter").classList.toggle("invalid", Boolean(message));
  }

  function updateBanner() {
    const banner = $("banner");
    const current = sources[state.mode === "compare" ? state.a : state.src];
    const notes = [];
    for (const source of sources) {
      if (source.error) notes.push(source.error);
      if (source.bad_lines)
        notes.push(
          `${source.label}: ${source.bad_lines} line(s) skipped — not JSON objects (` +
            source.bad_line_report.map((bad) => `line ${bad.line}: ${bad.error}`).join("; ") +
            ")",
        );
    }
    const stale = sources.filter((source) => source.stale);
    banner.replaceChildren();
    if (stale.length) {
      banner.append(
        el("span", { text: `${stale.map((s) => s.label).join(", ")} changed on disk. ` }),
        el("button", {
          type: "button",
          class: "link",
          text: "reload",
          onclick: async () => {
            for (const source of stale) await fetch(`/api/reload?src=${source.id}`, { method: "POST" });
            await refreshSources();
            rebuild();
          },
        }),
      );
    }
    for (const note of notes) banner.append(el("div", { text: note }));
    banner.className = banner.childNodes.length ? "banner warn" : "banner hidden";
    if (!current) return;
  }

  // ------------------------------------------------------------------ sources and status

  async function refreshSources() {
    workspace = await api("/api/sources");
    sources = workspace.sources;
    renderSourceSelects();
    renderStatus();
    updateBanner();
    return sources;
  }

  function sourceOption(source) {
    const mean = source.mean === null || source.mean === undefined ? "" : ` · μ ${fmtNum(source.mean)}`;
    const rows = source.complete ? `${fmtInt(source.rows)} rows` : `indexing… ${fmtInt(source.rows)}`;
    return el("option", { value: String(source.id), text: `${source.label} — ${rows}${mean}` });
  }

  function fillSelect(select, value) {
    const focused = document.activeElement === select;
    if (focused && select.options.length === sources.length) return;
    select.replaceChildren(...sources.map(sourceOption));
    select.value = String(value);
  }

  function renderSourceSelects() {
    if (!workspace) return;
    const multi = sources.length > 1;
    show($("source-box"), multi && state.mode !== "compare");
    $("source-label").textContent = workspace.paths.length === 1 && multi ? "config" : "file";
    fillSelect($("source"), state.src);
    fillSelect($("source-a"), state.a);
    fillSelect($("source-b"), state.b);
    document.querySelector('[data-mode="compare"]').disabled = !multi;
  }

  function renderStatus() {
    const status = $("status");
    status.replaceChildren();
    if (state.mode === "compare") {
      const a = sources[state.a];
      const b = sources[state.b];
      if (a && b)
        status.append(
          el("span", { class: "src-name", text: `A ${a.label}` }),
          el("span", { class: "sep", text: "vs" }),
          el("span", { class: "src-name", text: `B ${b.label}` }),
        );
      return;
    }
    const source = sources[state.src];
    if (!source) return;
    status.append(
      el("span", { class: "src-name", title: source.path, text: source.label }),
      el("span", { class: "sep", text: "·" }),
      el("span", { "data-testid": "row-count", class: "num", text: fmtInt(source.rows) }),
      el("span", { text: " rollouts" }),
    );
    if (source.mean !== null && source.mean !== undefined)
      status.append(el("span", { class: "sep", text: "·" }), el("span", { text: `mean reward ${fmtNum(source.mean)}` }));
    if (!source.complete) {
      const bar = el("span", { class: "progress" }, el("span", { class: "progress-fill" }));
      bar.firstChild.style.width = `${Math.round(source.progress * 100)}%`;
      status.append(el("span", { class: "sep", text: "·" }), el("span", { text: "indexing " }), bar);
    } else if (source.index_seconds !== null) {
      status.append(el("span", { class: "muted", text: ` (indexed in ${source.index_seconds.toFixed(2)} s)` }));
    }
  }

  let polling = false;
  async function pollWhileIndexing() {
    if (polling) return;
    polling = true;
    try {
      for (;;) {
        const before = sources.map((s) => `${s.rows}/${s.complete}`).join(",");
        if (sources.every((s) => s.complete)) break;
        await new Promise((resolve) => setTimeout(resolve, 600));
        await refreshSources();
        const after = sources.map((s) => `${s.rows}/${s.complete}`).join(",");
        if (before !== after) {
          list.refresh();
          renderOverview();
        }
      }
    } finally {
      polling = false;
    }
  }

  // ------------------------------------------------------------------ modes

  const ROW_COLUMNS = [
    ["line", "line"],
    ["task", "task"],
    ["rep", "rep"],
    ["task_id", "task id"],
    ["reward", "reward"],
    ["prompt", "prompt"],
    ["output", "output"],
    ["params", "params"],
    ["turns", "turns·tools"],
    ["latency", "latency"],
  ];
  const GROUP_COLUMNS = [
    ["task", "task"],
    ["task_id", "task id"],
    ["n", "n"],
    ["mu", "μ"],
    ["sigma", "σ"],
    ["range", "range"],
    ["repeats", "repeats"],
    ["prompt", "prompt"],
  ];
  const COMPARE_COLUMNS = [
    ["task", "task"],
    ["rep", "rep"],
    ["task_id", "task id"],
    ["ra", "A"],
    ["arrow", ""],
    ["rb", "B"],
    ["delta", "Δ"],
    ["oa", "output A"],
    ["ob", "output B"],
  ];

  function header(columns, mode) {
    $("list-head").className = `vhead grid-${mode}`;
    $("list-head").replaceChildren(...columns.map(([key, title]) => el("span", { class: `cell c-${key}`, text: title })));
    $("rows").className = `grid-${mode}`;
  }

  function cell(key, ...children) {
    return el("span", { class: `cell c-${key}` }, ...children);
  }

  function text(key, value, title) {
    return el("span", { class: `cell c-${key}`, text: value === null || value === undefined ? "—" : value, title: title || null });
  }

  function renderRowItem(row, position) {
    const node = el(
      "div",
      {
        class: "vrow",
        dataset: {
          i: row.i,
          task: row.task_index ?? "",
          repeat: row.repeat ?? "",
          reward: row.reward ?? "",
        },
        onclick: () => openRow(position),
      },
      text("line", row.line),
      text("task", row.task_index),
      text("rep", row.repeat),
      text("task_id", row.task_id, row.task_id),
      cell("reward", badge(row.reward)),
      text("prompt", row.prompt, row.prompt),
      el("span", { class: "cell c-output mono", text: row.output, title: row.output }),
      text("params", row.params, row.params),
      text("turns", `${row.turns ?? "—"} · ${row.tool_calls ?? "—"}`),
      text("latency", row.latency_s === null ? "—" : `${fmtNum(row.latency_s, 2)} s`),
    );
    return node;
  }

  function renderGroupItem(group, position) {
    const repeats = el("span", { class: "cell c-repeats" });
    for (const member of group.repeats) {
      const chip = badge(member.reward, `rbadge${member.match ? "" : " dim"}`);
      chip.title = `repeat ${member.repeat}: ${fmtReward(member.reward)}`;
      chip.dataset.i = String(member.i);
      chip.dataset.repeat = String(member.repeat);
      chip.addEventListener("click", (event) => {
        event.stopPropagation();
        openItem = { position };
        list.render();
        loadRowDetail(state.src, member.i);
      });
      repeats.append(chip);
    }
    return el(
      "div",
      {
        class: "vrow grow-row",
        dataset: { task: group.task_index ?? "", n: group.n },
        onclick: () => openRow(position),
      },
      text("task", group.task_index),
      text("task_id", group.task_id, group.task_id),
      text("n", group.n),
      el("span", { class: "cell c-mu num", "data-testid": "mu", text: fmtNum(group.mean, 2) }),
      el("span", { class: "cell c-sigma num", "data-testid": "sigma", text: fmtNum(group.std, 2) }),
      text("range", group.min === null ? "—" : `[${fmtNum(group.min, 2)}, ${fmtNum(group.max, 2)}]`),
      repeats,
      text("prompt", group.prompt, group.prompt),
    );
  }

  function renderPairItem(pair, position) {
    const delta = pair.delta;
    const deltaClass = delta === null ? "" : delta > 0 ? "up" : delta < 0 ? "down" : "";
    return el(
      "div",
      {
        class: `vrow pair status-${pair.status}`,
        dataset: { task: pair.task_index ?? "", repeat: pair.repeat ?? "", status: pair.status },
        onclick: () => openRow(position),
      },
      text("task", pair.task_index),
      text("rep", pair.repeat),
      text("task_id", pair.task_id, pair.task_id),
      cell("ra", pair.i_a === null ? el("span", { class: "muted", text: "absent" }) : badge(pair.reward_a)),
      text("arrow", "→"),
      cell("rb", pair.i_b === null ? el("span", { class: "muted", text: "absent" }) : badge(pair.reward_b)),
      el("span", { class: `cell c-delta num ${deltaClass}`, text: delta === null ? "—" : (delta > 0 ? "+" : "") + fmtReward(delta) }),
      el("span", { class: "cell c-oa mono", text: pair.output_a ?? "—", title: pair.output_a ?? "" }),
      el("span", { class: "cell c-ob mono", text: pair.output_b ?? "—", title: pair.output_b ?? "" }),
    );
  }

  function counts(message) {
    $("counts").textContent = message;
  }

  function fillSort() {
    const select = $("sort");
    const options =
      state.mode === "groups"
        ? [
            ["task", "task order"],
            ["-std", "σ, highest first"],
            ["std", "σ, lowest first"],
            ["mean", "μ, lowest first"],
            ["-mean", "μ, highest first"],
          ]
        : [
            ["file", "file order"],
            ["reward", "reward, lowest first"],
            ["-reward", "reward, highest first"],
          ];
    select.replaceChildren(...options.map(([value, label]) => el("option", { value, text: label })));
    select.value = state.mode === "groups" ? state.gsort : state.sort;
  }

  function rebuild() {
    if (!workspace) return; // start() builds the page once the sources are known
    writeHash();
    for (const button of document.querySelectorAll("#modes .mode"))
      button.classList.toggle("active", button.dataset.mode === state.mode);
    show($("row-tools"), state.mode !== "compare");
    show($("compare-tools"), state.mode === "compare");
    for (const [id, value] of [["reward-filter", state.reward], ["text-filter", state.q], ["compare-text", state.cq]])
      if (document.activeElement !== $(id) || $(id).value.trim() !== String(value).trim()) $(id).value = value;
    $("compare-view").value = state.view;
    $("compare-sort").value = state.csort;
    fillSort();
    renderSourceSelects();
    renderStatus();
    setFilterError("");
    closeDetail();
    renderOverview();
    if (state.mode === "rows") {
      header(ROW_COLUMNS, "rows");
      list.onTotal = null;
      list.reset(async (offset, limit) => {
        const result = await api("/api/rows", listQuery(state.sort, offset, limit)).catch(
          filterFailure,
        );
        const suffix = result.complete ? "" : " (indexing…)";
        counts(
          result.matched === result.total
            ? `${fmtInt(result.total)} rollouts${suffix}`
            : `showing ${fmtInt(result.matched)} of ${fmtInt(result.total)} rollouts${suffix}`,
        );
        return listed(result, result.rows);
      }, renderRowItem, ROW_HEIGHT);
    } else if (state.mode === "groups") {
      header(GROUP_COLUMNS, "groups");
      list.reset(async (offset, limit) => {
        const result = await api("/api/groups", listQuery(state.gsort, offset, limit)).catch(
          filterFailure,
        );
        const filtered = result.total_groups === null;
        counts(
          filtered
            ? `${fmtInt(result.matched)} ${result.matched === 1 ? "task" : "tasks"} with a matching rollout (matching repeats bright)`
            : `${fmtInt(result.matched)} ${result.matched === 1 ? "task" : "tasks"}`,
        );
        return listed(result, result.groups);
      }, renderGroupItem, GROUP_HEIGHT);
    } else {
      header(COMPARE_COLUMNS, "compare");
      list.reset(async (offset, limit) => {
        const result = await api("/api/compare", {
          a: state.a,
          b: state.b,
          view: state.view,
          sort: state.csort,
          q: state.cq,
          offset,
          limit,
        });
        renderCompareOverview(result);
        counts(`${fmtInt(result.matched)} ${describeView(state.view)} · ${fmtInt(result.summary.paired)} paired rows`);
        return listed(result, result.rows);
      }, renderPairItem, ROW_HEIGHT);
    }
  }

  // the query of a page of the current source's rows or task groups
  function listQuery(sort, offset, limit) {
    return { src: state.src, reward: state.reward, q: state.q, sort, offset, limit };
  }

  // a fetched page: its count (read by the browser tests), polling while still indexing
  function listed(result, rows) {
    $("counts").dataset.matched = String(result.matched);
    if (!result.complete) pollWhileIndexing();
    return { rows, total: result.matched };
  }

  function describeView(view) {
    return {
      changed: "changed rows",
      up: "improved rows",
      down: "worse rows",
      same: "unchanged rows",
      only_a: "rows only in A",
      only_b: "rows only in B",
      all: "pairs",
    }[view];
  }

  function filterFailure(error) {
    if (error.status === 400) setFilterError(error.message);
    throw error;
  }

  // ------------------------------------------------------------------ overview (histogram)

  let overviewToken = 0;
  async function renderOverview() {
    const box = $("overview");
    if (state.mode === "compare") return; // filled by the compare page fetch
    const token = (overviewToken += 1);
    let data;
    try {
      data = await api("/api/histogram", { src: state.src, q: state.q });
    } catch (error) {
      return;
    }
    if (token !== overviewToken) return;
    box.replaceChildren(histogramBlock(data, "reward distribution", true));
  }

  function histogramBlock(data, title, clickable) {
    const max = Math.max(1, ...data.bins.map((bin) => bin.count));
    const bars = el("div", { class: "bars", "data-testid": "histogram" });
    for (const bin of data.bins) {
      const label = data.kind === "discrete" ? fmtReward(bin.value) : `${fmtNum(bin.lo, 2)}–${fmtNum(bin.hi, 2)}`;
      const fill = el("span", { class: "bar-fill" });
      fill.style.height = `${Math.max(2, Math.round((bin.count / max) * 56))}px`;
      const mid = data.kind === "discrete" ? bin.value : (bin.lo + bin.hi) / 2;
      const color = rewardColor(mid);
      if (color) fill.style.background = color;
      const filter = data.kind === "discrete" ? `== ${fmtReward(bin.value)}` : `${fmtNum(bin.lo, 4)}..${fmtNum(bin.hi, 4)}`;
      const bar = el(
        "button",
        {
          type: "button",
          class: "bar",
          title: clickable ? `${bin.count} rollouts with reward ${label} — click to filter` : `${bin.count} × ${label}`,
          onclick: clickable
            ? () => {
                state.reward = filter;
                rebuild();
              }
            : null,
          disabled: !clickable,
        },
        el("span", { class: "bar-count", text: fmtInt(bin.count) }),
        fill,
        el("span", { class: "bar-label", text: label }),
      );
      bars.append(bar);
    }
    const stats = el(
      "div",
      { class: "stats" },
      el("div", { class: "stats-title", text: title }),
      stat("n", fmtInt(data.n)),
      stat("mean", fmtNum(data.mean)),
      stat("σ", fmtNum(data.std)),
      data.missing ? stat("no reward", fmtInt(data.missing)) : null,
    );
    return el("div", { class: "histogram" }, stats, bars);
  }

  function stat(name, value) {
    return el("div", { class: "stat" }, el("span", { class: "stat-name", text: name }), el("span", { class: "stat-value", text: value }));
  }

  let compareSummaryKey = "";
  function renderCompareOverview(result) {
    const key = `${result.a}/${result.b}/${result.summary.paired}/${result.summary.changed}/${result.complete}`;
    if (key === compareSummaryKey && $("overview").firstChild) return;
    compareSummaryKey = key;
    const s = result.summary;
    const cards = el(
      "div",
      { class: "cards", "data-testid": "compare-summary" },
      card("paired", fmtInt(s.paired), `${fmtInt(s.rows_a)} in A · ${fmtInt(s.rows_b)} in B`),
      card("changed", fmtInt(s.changed), `${fmtInt(s.up)} up · ${fmtInt(s.down)} down`, "changed-count"),
      card("mean A → B", `${fmtNum(s.mean_a)} → ${fmtNum(s.mean_b)}`, `paired: ${fmtNum(s.paired_mean_a)} → ${fmtNum(s.paired_mean_b)}`),
      s.only_a || s.only_b ? card("unpaired", `${fmtInt(s.only_a)} / ${fmtInt(s.only_b)}`, "only in A / only in B") : null,
    );
    const transitions = el("div", { class: "transitions" }, el("div", { class: "stats-title", text: "reward changes" }));
    if (!s.transitions.length) transitions.append(el("div", { class: "muted", text: "no reward changed" }));
    for (const move of s.transitions) {
      transitions.append(
        el("div", { class: "transition" }, badge(move.from), el("span", { class: "arrow", text: "→" }), badge(move.to), el("span", { class: "times", text: `× ${fmtInt(move.count)}` })),
      );
    }
    $("overview").replaceChildren(
      el("div", { class: "compare-overview" }, cards, transitions, distributionTable(result)),
    );
  }

  function card(title, value, note, testid) {
    return el(
      "div",
      { class: "card" },
      el("div", { class: "card-title", text: title }),
      el("div", { class: "card-value", text: value, "data-testid": testid || null }),
      el("div", { class: "card-note", text: note }),
    );
  }

  /** The seed's `sort -n | uniq -c`, A and B side by side. */
  function distributionTable(result) {
    const a = result.histogram_a;
    const b = result.histogram_b;
    const table = el("table", { class: "uniq" }, el("thead", null, el("tr", null, el("th", { text: "reward" }), el("th", { text: "A" }), el("th", { text: "B" }), el("th"))));
    const body = el("tbody");
    if (a.kind === "discrete" && b.kind === "discrete") {
      const values = [...new Set([...a.bins, ...b.bins].map((bin) => bin.value))].sort((x, y) => x - y);
      const count = (h, v) => (h.bins.find((bin) => bin.value === v) || { count: 0 }).count;
      for (const value of values) {
        const ca = count(a, value);
        const cb = count(b, value);
        const change = cb - ca;
        body.append(
          el(
            "tr",
            null,
            el("td", null, badge(value)),
            el("td", { class: "num", text: fmtInt(ca) }),
            el("td", { class: "num", text: fmtInt(cb) }),
            el("td", { class: "num delta-count", text: change ? (change > 0 ? `+${change}` : String(change)) : "" }),
          ),
        );
      }
    } else {
      body.append(el("tr", null, el("td", { text: "mean" }), el("td", { class: "num", text: fmtNum(a.mean) }), el("td", { class: "num", text: fmtNum(b.mean) })));
    }
    table.append(body);
    return el("div", { class: "uniq-box" }, el("div", { class: "stats-title", text: "distribution (uniq -c)" }), table);
  }

  // ------------------------------------------------------------------ detail

  function closeDetail() {
    openItem = null;
    show($("detail"), false);
    document.body.classList.remove("with-detail");
    list.render();
  }

  async function openRow(position) {
    const item = await list.itemAsync(position);
    if (item === undefined) return;
    openItem = { position };
    list.scrollToPosition(position);
    list.render();
    if (state.mode === "compare") loadPairDetail(item);
    else if (state.mode === "groups") loadRowDetail(state.src, item.repeats[0].i);
    else loadRowDetail(state.src, item.i);
  }

  function openDetailPanel(title) {
    show($("detail"), true);
    document.body.classList.add("with-detail");
    $("detail-title").replaceChildren(...title);
    $("detail-body").scrollTop = 0;
  }

  let detailToken = 0;
  async function loadRowDetail(src, i) {
    const token = (detailToken += 1);
    let row;
    try {
      row = await api(`/api/row/${i}`, { src });
    } catch (error) {
      reportError(error);
      return;
    }
    if (token !== detailToken) return;
    openDetailPanel([
      badge(row.reward, "big"),
      el("span", { class: "title-main", text: row.task_id ?? `row ${row.i}` }),
      el("span", { class: "title-sub", text: `task ${row.task_index ?? "—"} · repeat ${row.repeat ?? "—"} · line ${row.line}` }),
    ]);
    $("detail-body").replaceChildren(...rowSections(row, src));
  }

  function rowSections(row, src) {
    const sections = [];
    if (row.siblings && row.siblings.length > 1) {
      const strip = el("div", { class: "siblings" }, el("span", { class: "muted", text: "repeats " }));
      for (const sib of row.siblings) {
        const chip = badge(sib.reward, `rbadge${sib.i === row.i ? " current" : ""}`);
        chip.title = `repeat ${sib.repeat}`;
        chip.addEventListener("click", () => loadRowDetail(src, sib.i));
        strip.append(chip);
      }
      const stats = row.task_stats;
      if (stats) strip.append(el("span", { class: "muted", text: ` μ ${fmtNum(stats.mean, 2)} · σ ${fmtNum(stats.std, 2)} · range [${fmtNum(stats.min, 2)}, ${fmtNum(stats.max, 2)}]` }));
      sections.push(strip);
    }
    if (row.previous_reward !== null && row.previous_reward !== undefined)
      sections.push(el("div", { class: "note" }, "rescored: previous reward ", badge(row.previous_reward), " → ", badge(row.reward)));
    sections.push(section("Conversation", conversationBlock(row.conversation)));
    sections.push(section("Final output", el("pre", { class: "mono block output", "data-testid": "final-output", text: row.output })));
    sections.push(section("Verification", kvTable(row.verification)));
    const metrics = Object.assign({}, row.metrics || {});
    sections.push(section("Metrics", kvTable(metrics)));
    sections.push(section("Parameters", kvTable(Object.assign({ model: row.model, seed: row.seed }, row.params_dict || {}, { request: row.request, tools: row.tools && row.tools.length ? row.tools : null }))));
    sections.push(section("Task fields", kvTable(row.task_fields)));
    const raw = el("pre", { class: "mono block raw", text: JSON.stringify(row.raw, null, 2) });
    sections.push(el("details", { class: "section" }, el("summary", { text: "Raw JSON" }), raw));
    const command = `sed -n '${row.line}p' ${row.path} | jq .`;
    sections.push(el("div", { class: "cmd" }, el("code", { class: "mono", text: command })));
    return sections;
  }

  function section(title, body) {
    return el("section", { class: "section" }, el("h3", { text: title }), body);
  }

  function conversationBlock(entries) {
    const box = el("div", { class: "conversation", "data-testid": "conversation" });
    for (const entry of entries || []) {
      box.append(
        el(
          "div",
          { class: `msg kind-${entry.kind} from-${entry.source}` },
          el("div", { class: "msg-head" }, el("span", { class: "role", text: entry.label }), entry.call_id ? el("span", { class: "muted", text: entry.call_id }) : null),
          el("pre", { class: "mono msg-text", text: entry.text }),
        ),
      );
    }
    return box;
  }

  function kvTable(object) {
    if (object === null || object === undefined || (typeof object === "object" && !Object.keys(object).length))
      return el("div", { class: "muted", text: "—" });
    if (typeof object !== "object") return el("pre", { class: "mono block", text: compact(object) });
    const table = el("table", { class: "kv" });
    for (const [key, value] of Object.entries(object)) {
      if (value === null || value === undefined) continue;
      const shown = typeof value === "object" ? JSON.stringify(value, null, value && JSON.stringify(value).length > 80 ? 2 : 0) : String(value);
      table.append(el("tr", null, el("th", { text: key }), el("td", null, el("pre", { class: "mono", text: shown }))));
    }
    return table;
  }

  async function loadPairDetail(pair) {
    const token = (detailToken += 1);
    const [rowA, rowB] = await Promise.all([
      pair.i_a === null ? null : api(`/api/row/${pair.i_a}`, { src: state.a }),
      pair.i_b === null ? null : api(`/api/row/${pair.i_b}`, { src: state.b }),
    ]).catch((error) => {
      reportError(error);
      return [null, null];
    });
    if (token !== detailToken) return;
    const first = rowA || rowB;
    if (!first) return;
    openDetailPanel([
      badge(pair.reward_a),
      el("span", { class: "arrow", text: "→" }),
      badge(pair.reward_b),
      el("span", { class: "title-main", text: first.task_id ?? "" }),
      el("span", { class: "title-sub", text: `task ${pair.task_index ?? "—"} · repeat ${pair.repeat ?? "—"}` }),
    ]);
    const column = (row, side, label) => {
      if (!row) return el("div", { class: "side" }, el("h3", { text: `${side}: ${label}` }), el("div", { class: "muted", text: "no such rollout in this file" }));
      const produced = (row.conversation || []).filter((entry) => entry.source === "output");
      return el(
        "div",
        { class: "side" },
        el("h3", null, `${side}: `, el("span", { class: "src-name", text: label }), " ", badge(row.reward)),
        section("Output", conversationBlock(produced)),
        section("Verification", kvTable(row.verification)),
        section("Metrics", kvTable(row.metrics)),
        el("div", { class: "cmd" }, el("code", { class: "mono", text: `sed -n '${row.line}p' ${row.path} | jq .` })),
      );
    };
    $("detail-body").replaceChildren(
      section("Prompt", conversationBlock((first.conversation || []).filter((entry) => entry.source === "input"))),
      el("div", { class: "sides" }, column(rowA, "A", sources[state.a].label), column(rowB, "B", sources[state.b].label)),
    );
  }

  async function step(delta) {
    if (!openItem) return;
    const position = openItem.position + delta;
    if (position < 0 || position >= list.total) return;
    await openRow(position);
  }

  // ------------------------------------------------------------------ wiring

  function debounce(fn, ms) {
    let timer = null;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  function wire() {
    for (const button of document.querySelectorAll("#modes .mode")) {
      button.addEventListener("click", () => {
        state.mode = button.dataset.mode;
        if (state.mode === "compare" && state.a === state.b && sources.length > 1) state.b = state.a === 0 ? 1 : 0;
        rebuild();
      });
    }
    $("source").addEventListener("change", (event) => {
      state.src = Number(event.target.value);
      rebuild();
    });
    $("source-a").addEventListener("change", (event) => {
      state.a = Number(event.target.value);
      rebuild();
    });
    $("source-b").addEventListener("change", (event) => {
      state.b = Number(event.target.value);
      rebuild();
    });
    $("swap").addEventListener("click", () => {
      [state.a, state.b] = [state.b, state.a];
      rebuild();
    });
    // the state follows the inputs at once; the list follows after a pause in typing
    const applyReward = debounce(() => rebuild(), 350);
    $("reward-filter").addEventListener("input", () => {
      state.reward = $("reward-filter").value.trim();
      applyReward();
    });
    $("reward-filter").addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        state.reward = $("reward-filter").value.trim();
        rebuild();
      }
    });
    const applyText = debounce(() => rebuild(), 400);
    $("text-filter").addEventListener("input", () => {
      state.q = $("text-filter").value;
      applyText();
    });
    $("sort").addEventListener("change", (event) => {
      if (state.mode === "groups") state.gsort = event.target.value;
      else state.sort = event.target.value;
      rebuild();
    });
    $("compare-view").addEventListener("change", (event) => {
      state.view = event.target.value;
      rebuild();
    });
    $("compare-sort").addEventListener("change", (event) => {
      state.csort = event.target.value;
      rebuild();
    });
    const applyCompareText = debounce(() => rebuild(), 400);
    $("compare-text").addEventListener("input", () => {
      state.cq = $("compare-text").value;
      applyCompareText();
    });
    $("close").addEventListener("click", closeDetail);
    $("prev").addEventListener("click", () => step(-1));
    $("next").addEventListener("click", () => step(1));
    document.addEventListener("keydown", (event) => {
      const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
      if (event.key === "Escape") {
        if (typing) document.activeElement.blur();
        else closeDetail();
        return;
      }
      if (typing) return;
      if (event.key === "j" || event.key === "ArrowDown") {
        if (openItem) {
          event.preventDefault();
          step(1);
        } else if (event.key === "j") openRow(0);
      } else if (event.key === "k" || event.key === "ArrowUp") {
        if (openItem) {
          event.preventDefault();
          step(-1);
        }
      } else if (event.key === "/") {
        event.preventDefault();
        (state.mode === "compare" ? $("compare-text") : $("text-filter")).focus();
      }
    });
    const chips = $("chips");
    for (const [label, filter] of [
      ["< 0.3", "< 0.3"],
      ["= 1", "== 1"],
      ["0 < r < 1", "> 0 and < 1"],
    ]) {
      chips.append(
        el("button", {
          type: "button",
          class: "chip",
          text: label,
          title: `reward ${filter}`,
          onclick: () => {
            state.reward = state.reward === filter ? "" : filter;
            rebuild();
          },
        }),
      );
    }
    chips.append(
      el("button", {
        type: "button",
        class: "chip clear",
        text: "clear",
        title: "clear the filters",
        onclick: () => {
          state.reward = "";
          state.q = "";
          rebuild();
        },
      }),
    );
  }

  async function start() {
    wire();
    const fromHash = readHash();
    try {
      await refreshSources();
    } catch (error) {
      reportError(error);
      return;
    }
    if (!fromHash && workspace.compare && sources.length > 1) {
      state.mode = "compare";
      state.a = 0;
      state.b = 1;
    }
    if (state.src >= sources.length) state.src = 0;
    if (state.a >= sources.length) state.a = 0;
    if (state.b >= sources.length) state.b = Math.min(1, sources.length - 1);
    if (state.mode === "compare" && sources.length < 2) state.mode = "rows";
    rebuild();
    pollWhileIndexing();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
