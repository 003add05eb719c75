/* vaejax studio page: builds its controls from /api/options, asks the server for songs, draws them with
   VaejaxRoll and plays the server's General MIDI audio. */
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var body = document.body;
  var state = { options: [], current: null, limits: {}, pending: null, mixSeq: 0 };
  var roll = new VaejaxRoll.Roll($("roll"), {
    mixer: true,
    onSeek: function (beat) { player.seek(beat); },
    onMix: function (tracks) { remix(tracks); }
  });
  var player = new VaejaxRoll.Player($("audio"), roll, {
    onState: function (playing) {
      $("play").textContent = playing ? "❚❚ Pause" : "▶ Play";
      body.dataset.playing = playing ? "1" : "0";
    },
    onError: function (e) { if (e && e.name !== "AbortError") showError("cannot play the audio: " + e.message); }
  });

  function setStatus(text) { $("status").textContent = text || ""; }

  function setBusy(on, text) {
    body.dataset.busy = on ? "1" : "0";
    $("busy-text").textContent = text || "Working…";
    if (on) setStatus(text || "Working…");
    ["generate", "arrange", "vary", "continue", "upload"].forEach(function (id) { $(id).disabled = on; });
    if (!on) updateButtons();
  }

  function showError(message) {
    var e = $("error");
    e.textContent = message;
    e.hidden = !message;
    if (message) setStatus("");
  }

  function updateButtons() {
    var has = !!state.current, busy = body.dataset.busy === "1";
    $("generate").disabled = busy || !state.options.length;
    ["arrange", "vary", "continue"].forEach(function (id) { $(id).disabled = busy || !has; });
    $("play").disabled = $("stop").disabled = !has;
  }

  async function api(url, init) {
    var res;
    try {
      res = await fetch(url, init);
    } catch (e) {
      throw new Error("the studio server does not answer (is it still running?)");
    }
    var data = null;
    try { data = await res.json(); } catch (e) { /* not JSON */ }
    if (!res.ok) throw new Error((data && data.error) || ("the server answered " + res.status + " " + res.statusText));
    return data;
  }

  // ---- controls, from the model's options ---------------------------------------------------------

  function field(opt) {
    var row = document.createElement("div");
    row.className = "field";
    row.dataset.option = opt.name;
    var label = document.createElement("label");
    label.textContent = opt.label;
    label.htmlFor = "opt-" + opt.name;
    row.appendChild(label);
    var input;
    if (opt.type === "tracks") {
      input = document.createElement("div");
      input.className = "tracks";
      input.id = "opt-" + opt.name;
      opt.choices.forEach(function (name) {
        var l = document.createElement("label"), c = document.createElement("input");
        c.type = "checkbox"; c.value = name; c.checked = opt.default.indexOf(name) >= 0;
        c.name = "opt-" + opt.name;
        l.appendChild(c); l.appendChild(document.createTextNode(" " + name));
        input.appendChild(l);
      });
    } else if (opt.type === "choice") {
      input = document.createElement("select");
      opt.choices.forEach(function (c) {
        var o = document.createElement("option"); o.value = o.textContent = c; input.appendChild(o);
      });
      input.value = opt.default;
    } else if (opt.type === "bool") {
      input = document.createElement("input");
      input.type = "checkbox";
      input.checked = !!opt.default;
    } else if (opt.type === "str") {
      input = document.createElement("input");
      input.type = "text";
      input.value = opt.default || "";
    } else {
      input = document.createElement("input");
      input.type = "number";
      if (opt.min !== null && opt.min !== undefined) input.min = opt.min;
      if (opt.max !== null && opt.max !== undefined) input.max = opt.max;
      input.step = opt.step || (opt.type === "int" ? 1 : "any");
      input.value = opt.default === null ? "" : opt.default;
      if (opt.default === null) input.placeholder = "default";
    }
    input.id = "opt-" + opt.name;
    input.title = opt.help;
    row.appendChild(input);
    var hint = document.createElement("div");
    hint.className = "hint";
    var modes = opt.modes.length === 4 ? "" : " (" + opt.modes.map(function (m) { return m === "sample" ? "new songs" : m; }).join(", ") + ")";
    hint.textContent = opt.help + modes;
    row.appendChild(hint);
    return row;
  }

  function readOptions() {
    var out = {};
    state.options.forEach(function (opt) {
      var input = $("opt-" + opt.name);
      if (opt.type === "tracks") {
        out[opt.name] = Array.prototype.filter.call(input.querySelectorAll("input"), function (c) { return c.checked; })
          .map(function (c) { return c.value; });
      } else if (opt.type === "bool") {
        out[opt.name] = input.checked;
      } else if (opt.type === "choice" || opt.type === "str") {
        out[opt.name] = input.value;
      } else {
        var v = input.value.trim();
        out[opt.name] = v === "" ? null : (isNaN(Number(v)) ? v : Number(v)); // the server says what is wrong
      }
    });
    return out;
  }

  // ---- songs ---------------------------------------------------------------------------------------

  function mixUrl(entry, tracks) {
    return tracks && tracks.length < 5 ? entry.audio + "?tracks=" + tracks.join(",") : entry.audio;
  }

  function show(entry, t0) {
    state.current = entry;
    showError("");
    $("empty").hidden = true;
    $("roll").hidden = false;
    player.stop();
    roll.resetMix();
    roll.setSong(entry.song);
    if (t0 !== undefined) body.dataset.drawnMs = (performance.now() - t0).toFixed(1);
    $("roll").dataset.songId = entry.id;
    $("roll").dataset.kind = entry.kind;
    $("song-title").textContent = entry.label;
    $("song-title").title = entry.label;
    $("song-info").textContent = entry.song.bars + " bars · " + entry.song.tempo + " bpm";
    $("notes").textContent = (entry.notes || []).join(" · ");
    $("dl-midi").href = entry.midi;
    $("dl-png").href = entry.png;
    $("dl-wav").href = entry.audio;
    var audio = $("audio");
    body.dataset.audioReady = "0";
    var seq = ++state.mixSeq;
    var ready = function () {
      audio.removeEventListener("canplay", ready);
      if (seq !== state.mixSeq) return;
      body.dataset.audioReady = "1";
      audio.dataset.songId = entry.id;
      if (t0 !== undefined) {
        var ms = performance.now() - t0;
        body.dataset.lastMs = ms.toFixed(1);
        $("timing").textContent = "drawn and playable " + Math.round(ms) + " ms after the click";
      }
      setBusy(false);
      setStatus("ready");
    };
    audio.addEventListener("canplay", ready);
    audio.onerror = function () {
      if (seq !== state.mixSeq) return;
      setBusy(false);
      showError("the audio of " + entry.label + " could not be loaded");
    };
    setBusy(true, "Rendering audio…");
    audio.src = entry.audio;
    audio.load();
    updateButtons();
    renderHistory();
  }

  function remix(tracks) {
    var entry = state.current;
    if (!entry) return;
    var url = mixUrl(entry, tracks);
    $("dl-wav").href = url;
    body.dataset.audioReady = "0";
    var audio = $("audio"), seq = ++state.mixSeq;
    setStatus(tracks.length ? "rendering the mix…" : "every track is muted");
    var ready = function () {
      audio.removeEventListener("canplay", ready);
      if (seq !== state.mixSeq) return;
      body.dataset.audioReady = "1";
      body.dataset.mix = tracks.join(",");
      setStatus("ready");
    };
    audio.addEventListener("canplay", ready);
    player.swap(url);
  }

  async function run(mode) {
    if (body.dataset.busy === "1") return;
    var t0 = performance.now();
    showError("");
    setBusy(true, mode === "sample" ? "Generating…" : mode === "arrange" ? "Arranging…" : mode === "vary" ? "Varying…" : "Continuing…");
    try {
      var entry = await api("api/generate", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ mode: mode, options: readOptions(), source: state.current ? state.current.id : null })
      });
      show(entry, t0);
      await refreshHistory();
    } catch (e) {
      setBusy(false);
      showError(e.message);
    }
  }

  async function upload(file) {
    if (!file) return;
    showError("");
    var max = state.limits.max_upload_bytes;
    if (max && file.size > max) { // the server checks too; this spares sending it
      showError(file.name + ": " + (file.size / 1048576).toFixed(1) + " MiB, more than the studio's cap of " + (max / 1048576) + " MiB");
      return;
    }
    setBusy(true, "Reading " + file.name + "…");
    try {
      var entry = await api("api/upload?name=" + encodeURIComponent(file.name), { method: "POST", body: file });
      show(entry);
      await refreshHistory();
    } catch (e) {
      setBusy(false);
      showError(e.message);
    } finally {
      $("upload").value = "";
    }
  }

  // ---- history -------------------------------------------------------------------------------------

  async function refreshHistory() {
    try {
      state.history = (await api("api/history")).history;
    } catch (e) { return; }
    renderHistory();
  }

  function renderHistory() {
    var list = $("history");
    list.textContent = "";
    (state.history || []).forEach(function (h) {
      var li = document.createElement("li"), b = document.createElement("button");
      b.type = "button";
      li.dataset.id = h.id;
      if (state.current && state.current.id === h.id) li.className = "current";
      var what = document.createElement("span");
      what.textContent = "#" + h.id + " " + h.label + " · " + h.bars + " bars";
      var when = document.createElement("span");
      when.className = "when";
      var counts = Object.keys(h.counts).map(function (k) { return k[0] + h.counts[k]; }).join(" ");
      when.textContent = counts + " · " + new Date(h.created * 1000).toLocaleTimeString();
      b.appendChild(what); b.appendChild(when);
      b.addEventListener("click", async function () {
        if (body.dataset.busy === "1") return;
        try { show(await api("api/song/" + h.id)); } catch (e) { showError(e.message); }
      });
      li.appendChild(b);
      list.appendChild(li);
    });
  }

  // ---- wiring --------------------------------------------------------------------------------------

  $("generate").addEventListener("click", function () { run("sample"); });
  $("arrange").addEventListener("click", function () { run("arrange"); });
  $("vary").addEventListener("click", function () { run("vary"); });
  $("continue").addEventListener("click", function () { run("continue"); });
  $("upload").addEventListener("change", function (ev) { upload(ev.target.files[0]); });
  $("play").addEventListener("click", function () { player.toggle(); });
  $("stop").addEventListener("click", function () { player.stop(); });
  $("zoom-in").addEventListener("click", function () { roll.zoom(1.5); });
  $("zoom-out").addEventListener("click", function () { roll.zoom(1 / 1.5); });
  $("zoom-fit").addEventListener("click", function () { roll.fit(); });
  $("follow").addEventListener("change", function (ev) { player.follow = ev.target.checked; });
  document.addEventListener("keydown", function (ev) {
    var tag = (ev.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "select" || tag === "textarea") {
      if (ev.key === "Enter" && tag === "input") run("sample");
      return;
    }
    if (ev.key === " " && state.current) { ev.preventDefault(); player.toggle(); }
  });

  (async function start() {
    try {
      var d = await api("api/options");
      state.options = d.options;
      state.limits = d.limits;
      $("model").textContent = "model " + d.model.name + " · K " + d.model.latent + (d.model.synthetic ? " · trained on SYNTHETIC demo data" : "");
      var main = $("options"), adv = $("advanced");
      d.options.forEach(function (opt) { (opt.advanced ? adv : main).appendChild(field(opt)); });
      $("upload-label").title = "MIDI or npz, up to " + (d.limits.max_upload_bytes / 1048576) + " MiB";
      await refreshHistory();
      updateButtons();
      body.dataset.readyMs = performance.now().toFixed(1); // since navigation started
      body.dataset.ready = "1";
      setStatus("ready");
    } catch (e) {
      showError(e.message);
    }
  })();
})();
