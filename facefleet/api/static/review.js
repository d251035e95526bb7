// The review page's behaviour: the job timeline and track corrections, naming clusters.
// Everything user-supplied goes into the page as textContent, never as HTML.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;

async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.headers["X-CSRF-Token"] = csrf;
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || `${response.status} ${response.statusText}`);
  return data;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function notify(text, isError = false) {
  const notice = document.getElementById("notice");
  if (!notice) return;
  notice.textContent = text;
  notice.classList.toggle("error", isError);
}

const fmt = (s) => s.toFixed(1);

// ---- the job page -----------------------------------------------------------------------

// One row per named person (first appearance first); unknown tracks packed into as few
// rows as do not overlap, so a crowd does not make hundreds of rows.
function timelineRows(tracks) {
  const named = new Map();
  const unknown = [];
  for (const t of [...tracks].sort((a, b) => a.start_s - b.start_s)) {
    if (t.identity === null) unknown.push(t);
    else (named.get(t.identity) || named.set(t.identity, []).get(t.identity)).push(t);
  }
  const rows = [...named].map(([name, ts]) => ({ label: name, identity: name, tracks: ts }));
  const lanes = [];
  for (const t of unknown) {
    let lane = lanes.find((l) => l.end < t.start_s);
    if (!lane) lanes.push((lane = { end: -1, tracks: [] }));
    lane.tracks.push(t);
    lane.end = t.end_s;
  }
  lanes.forEach((l, i) =>
    rows.push({ label: lanes.length > 1 ? `Unknown ${i + 1}` : "Unknown", identity: "", tracks: l.tracks })
  );
  return rows;
}

function drawTimeline(view, video) {
  const timeline = document.getElementById("timeline");
  const duration = view.duration || Math.max(1, ...view.tracks.map((t) => t.end_s));
  timeline.replaceChildren();
  for (const row of timelineRows(view.tracks)) {
    const lane = el("div", { class: "lane" });
    for (const t of row.tracks) {
      const left = (100 * t.start_s) / duration;
      const width = Math.max(0.8, (100 * (t.end_s - t.start_s)) / duration);
      lane.append(
        el("button", {
          class: "bar" + (t.corrected ? " corrected" : "") + (t.identity === null ? " unknown" : ""),
          style: `left:${left}%;width:${Math.min(width, 100 - left)}%`,
          title: `track ${t.track_id}: ${fmt(t.start_s)}–${fmt(t.end_s)} s`,
          "data-track": t.track_id,
          "data-start": t.start_s,
          onclick: () => {
            video.pause();
            video.currentTime = t.start_s;
            document.getElementById(`track-${t.track_id}`)?.scrollIntoView({ block: "nearest" });
          },
        })
      );
    }
    timeline.append(
      el("div", { class: "row", "data-identity": row.identity }, el("span", { class: "label" }, row.label), lane)
    );
  }
  timeline.append(el("div", { class: "playhead", id: "playhead" }));
  const playhead = document.getElementById("playhead");
  const clock = document.getElementById("clock");
  const move = () => {
    playhead.style.left = `calc(var(--label) + (100% - var(--label)) * ${video.currentTime / duration})`;
    clock.textContent = fmt(video.currentTime);
  };
  video.ontimeupdate = move;
  video.onseeked = move;
  move();
}

function drawTracks(view, review) {
  const body = document.getElementById("tracks");
  const job = review.dataset.job;
  const canSubmit = review.dataset.canSubmit === "yes";
  body.replaceChildren();
  for (const t of view.tracks) {
    const name = el("td", { class: "name" }, t.identity ?? "unknown");
    if (t.identity === null) name.classList.add("muted");
    if (t.corrected) {
      const was = t.original_identity ?? "unknown";
      name.append(" ", el("span", { class: "badge", title: `was ${was}` }, "corrected"));
    }
    const actions = el("td", { class: "actions" });
    if (canSubmit) {
      const form = el(
        "form",
        { class: "is-form", hidden: "" },
        el("input", { name: "name", placeholder: "Person_Name", required: "", maxlength: "120" }),
        el("button", { type: "submit" }, "Save")
      );
      form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        correct(review, t.track_id, { is: form.elements.name.value.trim() });
      });
      actions.append(
        el("button", { class: "is", onclick: () => { form.hidden = !form.hidden; form.elements.name.focus(); } }, "this is…")
      );
      if (t.identity !== null) {
        actions.append(
          el("button", { class: "not", onclick: () => correct(review, t.track_id, { not: t.identity }) }, "not this person")
        );
      }
      actions.append(form);
    }
    const sim = t.similarity === null ? "–" : t.similarity.toFixed(3);
    body.append(
      el(
        "tr",
        { id: `track-${t.track_id}`, "data-track": t.track_id },
        el("td", {}, el("img", { class: "thumb", alt: `track ${t.track_id}`, loading: "lazy", src: `/v1/jobs/${job}/tracks/${t.track_id}/thumbnail` })),
        el("td", {}, `#${t.track_id}`),
        name,
        el("td", {}, sim),
        el("td", {}, el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); document.getElementById("video").currentTime = t.start_s; } }, `${fmt(t.start_s)}–${fmt(t.end_s)} s`)),
        actions
      )
    );
  }
}

async function correct(review, trackId, body) {
  const job = review.dataset.job;
  if (body.is === "") return;
  const row = document.getElementById(`track-${trackId}`);
  row.classList.add("busy");
  try {
    const report = await api("POST", `/v1/jobs/${job}/tracks/${trackId}/correction`, { ...body, gallery: review.dataset.gallery });
    notify(`Track ${trackId}: ${report.before ?? "unknown"} → ${report.after ?? "unknown"}`);
    // The result JSON is the truth after a correction: redraw from it.
    const results = await api("GET", `/v1/jobs/${job}/results`);
    const result = Object.values(results).find((r) => Array.isArray(r.tracks));
    if (result) render(review, { ...currentView, tracks: result.tracks });
  } catch (err) {
    notify(`Track ${trackId}: ${err.message}`, true);
  } finally {
    document.getElementById(`track-${trackId}`)?.classList.remove("busy");
  }
}

let currentView = null;

function render(review, view) {
  currentView = view;
  drawTimeline(view, document.getElementById("video"));
  drawTracks(view, review);
}

const review = document.getElementById("review");
if (review) render(review, JSON.parse(document.getElementById("job-data").textContent));

// ---- unknown people ---------------------------------------------------------------------

for (const form of document.querySelectorAll("form.name-cluster")) {
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const id = form.dataset.cluster;
    const body = {
      name: form.elements.name.value.trim(),
      gallery: form.elements.gallery.value.trim() || "default",
      version: Number(form.dataset.version),
    };
    try {
      const report = await api("POST", `/v1/people/${id}/name`, body);
      notify(`Cluster ${id} is now ${report.name}: ${report.tracks} tracks renamed, ${report.enrolled} faces enrolled`);
      document.getElementById(`cluster-${id}`).remove();
    } catch (err) {
      notify(`Cluster ${id}: ${err.message}`, true);
    }
  });
}
