/* vaejax piano roll and player: one lane per track in its colour, bar lines, zoom, scroll, a playhead
   driven by an <audio> element. Used by the studio page and, inlined, by vaejax.show() in notebooks.
   No dependencies. */
(function (global) {
  "use strict";
  var ORDER = [1, 2, 3, 4, 0]; // Piano, Guitar, Bass, Strings, Drums: as in the PNG pictures
  var MIN_PPB = 1, MAX_PPB = 400;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function Roll(host, opts) {
    opts = opts || {};
    this.host = host;
    this.opts = opts;
    this.laneH = opts.laneHeight || 84;
    this.rulerH = 20;
    this.song = null;
    this.ppb = null; // pixels per beat; null: fit the song to the width
    this.mute = [false, false, false, false, false];
    this.solo = [false, false, false, false, false];
    this.playBeat = null;
    this.drawn = 0;
    host.classList.add("vj-roll");
    host.textContent = "";
    this.heads = el("div", "vj-heads");
    this.scroller = el("div", "vj-scroll");
    this.canvas = el("canvas", "vj-canvas");
    this.spacer = el("div", "vj-spacer");
    this.scroller.appendChild(this.canvas);
    this.scroller.appendChild(this.spacer);
    host.appendChild(this.heads);
    host.appendChild(this.scroller);
    var self = this;
    this.scroller.addEventListener("scroll", function () { self.draw(); });
    this.scroller.addEventListener("wheel", function (ev) {
      if (!(ev.ctrlKey || ev.metaKey)) return;
      ev.preventDefault();
      self.zoom(ev.deltaY < 0 ? 1.25 : 0.8, ev.offsetX - self.scroller.scrollLeft);
    }, { passive: false });
    this.canvas.addEventListener("click", function (ev) {
      if (!self.song || !self.opts.onSeek) return;
      var rect = self.canvas.getBoundingClientRect();
      var beat = (ev.clientX - rect.left + self.scroller.scrollLeft) / self.pixelsPerBeat();
      self.opts.onSeek(Math.max(0, Math.min(beat, self.beats())));
    });
    if (global.ResizeObserver) {
      new ResizeObserver(function () { self.draw(); }).observe(this.scroller);
    } else {
      global.addEventListener("resize", function () { self.draw(); });
    }
  }

  Roll.prototype.beats = function () {
    return this.song ? this.song.steps / this.song.resolution : 0;
  };

  Roll.prototype.width = function () {
    return Math.max(100, this.scroller.clientWidth || this.host.clientWidth - 120 || 600);
  };

  Roll.prototype.pixelsPerBeat = function () {
    if (this.ppb !== null) return this.ppb;
    var beats = Math.max(1, this.beats());
    return Math.max(MIN_PPB, Math.min(MAX_PPB, (this.width() - 8) / beats));
  };

  Roll.prototype.audible = function (i) {
    var anySolo = this.solo.some(function (s) { return s; });
    return anySolo ? this.solo[i] : !this.mute[i];
  };

  Roll.prototype.audibleTracks = function () {
    var out = [];
    for (var i = 0; i < 5; i++) if (this.audible(i)) out.push(i);
    return out;
  };

  Roll.prototype.setSong = function (song) {
    this.song = song;
    this.ppb = null;
    this.playBeat = null;
    this.scroller.scrollLeft = 0;
    var self = this;
    this.lanes = ORDER.map(function (t) {
      var tr = song.tracks[t], n = tr.notes, lo = 127, hi = 0;
      for (var i = 2; i < n.length; i += 3) { if (n[i] < lo) lo = n[i]; if (n[i] > hi) hi = n[i]; }
      if (lo > hi) { lo = 48; hi = 72; }
      var pad = Math.max(0, 12 - (hi - lo)) / 2;
      return { track: t, lo: Math.floor(lo - pad - 1), hi: Math.ceil(hi + pad + 1) };
    });
    this.heads.textContent = "";
    var ruler = el("div", "vj-head vj-ruler-head", song.bars + " bars");
    ruler.style.height = this.rulerH + "px";
    this.heads.appendChild(ruler);
    this.lanes.forEach(function (lane) {
      var tr = song.tracks[lane.track], count = tr.notes.length / 3;
      var head = el("div", "vj-head");
      head.style.height = self.laneH + "px";
      head.style.borderLeftColor = tr.color;
      head.dataset.track = tr.name;
      head.dataset.notes = String(count);
      var name = el("div", "vj-name", tr.name);
      name.style.color = tr.color;
      head.appendChild(name);
      head.appendChild(el("div", "vj-count", count + (count === 1 ? " note" : " notes")));
      if (self.opts.mixer) {
        var row = el("div", "vj-mix");
        var m = el("button", "vj-mute", "M"), s = el("button", "vj-solo", "S");
        m.title = "mute " + tr.name; s.title = "solo " + tr.name;
        m.type = s.type = "button";
        m.dataset.track = s.dataset.track = tr.name;
        m.addEventListener("click", function () { self.toggle("mute", lane.track); });
        s.addEventListener("click", function () { self.toggle("solo", lane.track); });
        row.appendChild(m); row.appendChild(s);
        head.appendChild(row);
      }
      self.heads.appendChild(head);
      self.host.setAttribute("data-notes-" + tr.name.toLowerCase(), String(count));
    });
    this.host.dataset.songName = song.name;
    this.host.dataset.bars = String(song.bars);
    this.syncMix();
    this.draw();
  };

  Roll.prototype.toggle = function (what, t) {
    this[what][t] = !this[what][t];
    this.syncMix();
    this.draw();
    if (this.opts.onMix) this.opts.onMix(this.audibleTracks());
  };

  Roll.prototype.resetMix = function () {
    this.mute = [false, false, false, false, false];
    this.solo = [false, false, false, false, false];
    this.syncMix();
  };

  Roll.prototype.syncMix = function () {
    var self = this;
    Array.prototype.forEach.call(this.heads.querySelectorAll(".vj-head[data-track]"), function (head) {
      var t = self.song.tracks.findIndex(function (tr) { return tr.name === head.dataset.track; });
      head.classList.toggle("vj-silent", !self.audible(t));
      var m = head.querySelector(".vj-mute"), s = head.querySelector(".vj-solo");
      if (m) { m.classList.toggle("on", self.mute[t]); m.setAttribute("aria-pressed", self.mute[t]); }
      if (s) { s.classList.toggle("on", self.solo[t]); s.setAttribute("aria-pressed", self.solo[t]); }
    });
    this.host.dataset.audible = this.audibleTracks().join(",");
  };

  Roll.prototype.zoom = function (factor, anchorX) {
    if (!this.song) return;
    var ppb = this.pixelsPerBeat(), w = this.width();
    if (anchorX === undefined) anchorX = this.playBeat !== null ? this.playBeat * ppb - this.scroller.scrollLeft : w / 2;
    var beatAtAnchor = (this.scroller.scrollLeft + anchorX) / ppb;
    this.ppb = Math.max(MIN_PPB, Math.min(MAX_PPB, ppb * factor));
    this.spacer.style.width = Math.ceil(this.beats() * this.ppb + 8) + "px";
    this.scroller.scrollLeft = Math.max(0, beatAtAnchor * this.ppb - anchorX);
    this.draw();
  };

  Roll.prototype.fit = function () {
    this.ppb = null;
    this.scroller.scrollLeft = 0;
    this.draw();
  };

  Roll.prototype.setPlayhead = function (beat, follow) {
    this.playBeat = beat;
    if (beat !== null && follow) {
      var x = beat * this.pixelsPerBeat(), left = this.scroller.scrollLeft, w = this.width();
      if (x < left || x > left + w * 0.92) this.scroller.scrollLeft = Math.max(0, x - w * 0.08);
    }
    this.host.dataset.playhead = beat === null ? "" : beat.toFixed(3);
    this.draw();
  };

  Roll.prototype.draw = function () {
    var canvas = this.canvas, song = this.song;
    var dpr = global.devicePixelRatio || 1, w = this.width(), h = this.rulerH + 5 * this.laneH;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
      canvas.style.width = w + "px";
      canvas.style.height = h + "px";
    }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#14161b";
    ctx.fillRect(0, 0, w, h);
    if (!song) return;
    var ppb = this.pixelsPerBeat(), beats = this.beats();
    this.spacer.style.width = Math.ceil(beats * ppb + 8) + "px";
    var x0 = this.scroller.scrollLeft, b0 = Math.max(0, Math.floor(x0 / ppb)), b1 = Math.min(beats, Math.ceil((x0 + w) / ppb));
    var res = song.resolution, bpb = song.beats_per_bar, rh = this.rulerH, lh = this.laneH, self = this;
    // lanes
    for (var k = 0; k < 5; k++) {
      ctx.fillStyle = k % 2 ? "#1b1e25" : "#181a20";
      ctx.fillRect(0, rh + k * lh, w, lh);
    }
    ctx.fillStyle = "#0f1014";
    ctx.fillRect(0, 0, w, rh);
    // beat and bar lines, bar numbers
    var every = Math.max(1, Math.ceil(36 / (ppb * bpb)));
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    for (var b = b0; b <= b1; b++) {
      var x = Math.round(b * ppb - x0) + 0.5, bar = b % bpb === 0;
      if (!bar && ppb < 6) continue;
      ctx.strokeStyle = bar ? "#3a3f4b" : "#23262e";
      ctx.beginPath(); ctx.moveTo(x, bar ? 0 : rh); ctx.lineTo(x, h); ctx.stroke();
      if (bar && (b / bpb) % every === 0) {
        ctx.fillStyle = "#9aa3b5";
        ctx.fillText(String(b / bpb + 1), x + 3, rh / 2);
      }
    }
    // notes
    this.lanes.forEach(function (lane, k) {
      var tr = song.tracks[lane.track], n = tr.notes, top = rh + k * lh + 3;
      var rowH = (lh - 6) / (lane.hi - lane.lo + 1);
      ctx.fillStyle = self.audible(lane.track) ? tr.color : "#555a66";
      var s0 = (x0 / ppb) * res, s1 = ((x0 + w) / ppb) * res;
      for (var i = 0; i < n.length; i += 3) {
        if (n[i + 1] < s0 || n[i] > s1) continue;
        var nx = n[i] / res * ppb - x0, nw = Math.max(1.5, (n[i + 1] - n[i]) / res * ppb - 0.5);
        ctx.fillRect(nx, top + (lane.hi - n[i + 2]) * rowH, nw, Math.max(1.5, rowH - 0.2));
      }
    });
    // after the end of the song
    var end = beats * ppb - x0;
    if (end < w) { ctx.fillStyle = "rgba(0,0,0,0.45)"; ctx.fillRect(end, 0, w - end, h); }
    // playhead
    if (this.playBeat !== null) {
      var px = Math.round(this.playBeat * ppb - x0);
      ctx.fillStyle = "#ff3b5c";
      ctx.fillRect(px - 1, 0, 2, h);
    }
    this.drawn += 1;
    this.host.dataset.drawn = String(this.drawn);
    this.host.dataset.pixelsPerBeat = ppb.toFixed(3);
  };

  /* Playback through an <audio> element; the playhead follows audio.currentTime. */
  function Player(audio, roll, opts) {
    this.audio = audio;
    this.roll = roll;
    this.opts = opts || {};
    this.follow = true;
    this.raf = null;
    var self = this;
    audio.addEventListener("ended", function () { self.halt(); self.roll.setPlayhead(self.roll.beats(), false); });
    audio.addEventListener("pause", function () { self.halt(); });
    audio.addEventListener("play", function () { self.loop(); if (self.opts.onState) self.opts.onState(true); });
  }

  Player.prototype.tempo = function () { return this.roll.song ? this.roll.song.tempo : 120; };

  Player.prototype.loop = function () {
    var self = this;
    if (this.raf !== null) return;
    var tick = function () {
      self.roll.setPlayhead(self.audio.currentTime * self.tempo() / 60, self.follow);
      self.raf = self.audio.paused ? null : global.requestAnimationFrame(tick);
    };
    this.raf = global.requestAnimationFrame(tick);
  };

  Player.prototype.halt = function () {
    if (this.raf !== null) global.cancelAnimationFrame(this.raf);
    this.raf = null;
    if (this.opts.onState) this.opts.onState(false);
  };

  Player.prototype.playing = function () { return !this.audio.paused; };

  Player.prototype.play = function () {
    var p = this.audio.play();
    if (p && p.catch) { var self = this; p.catch(function (e) { if (self.opts.onError) self.opts.onError(e); }); }
    return p;
  };

  Player.prototype.stop = function () {
    this.audio.pause();
    try { this.audio.currentTime = 0; } catch (e) { /* no media yet */ }
    this.roll.setPlayhead(null, false);
  };

  Player.prototype.toggle = function () { if (this.playing()) this.audio.pause(); else this.play(); };

  Player.prototype.seek = function (beat) {
    try { this.audio.currentTime = beat * 60 / this.tempo(); } catch (e) { return; }
    this.roll.setPlayhead(beat, false);
  };

  /* Replace the audio (another mix of the same song), keeping the position and whether it plays. */
  Player.prototype.swap = function (src) {
    var a = this.audio, at = a.currentTime, was = !a.paused, self = this;
    a.addEventListener("loadedmetadata", function once() {
      a.removeEventListener("loadedmetadata", once);
      try { a.currentTime = Math.min(at, a.duration || at); } catch (e) { /* ignore */ }
      if (was) self.play();
    });
    a.src = src;
    a.load();
  };

  global.VaejaxRoll = { Roll: Roll, Player: Player, ORDER: ORDER };
})(window);
