"""The studio's piano roll and player inside a notebook cell (Jupyter, Colab), without a server:
`vaejax.show(song)` returns HTML holding the roll's script, the song's notes and its audio as a base64 WAV.
"""

from __future__ import annotations

import base64
import html
import json
import uuid

from vaejax.config import SAMPLE_RATE, DataConfig
from vaejax.studio import payload


def show_html(
    song, *, sample_rate: int = SAMPLE_RATE, audio: bool = True, cfg: DataConfig = DataConfig(), lane_height: int = 64
) -> str:
    """The HTML of `show` (a string): a self-contained roll and player for a Multitrack."""
    data = payload.song_payload(song, cfg)
    ident = "vj-" + uuid.uuid4().hex[:12]
    src = ""
    how = "no audio"
    if audio:
        wav, how = payload.render_wav(song, sample_rate)
        src = "data:audio/wav;base64," + base64.b64encode(wav).decode("ascii")
    counts = payload.note_counts(data)
    summary = ", ".join(f"{name} {n}" for name, n in counts.items())
    # "</" cannot end the script early inside a JSON string
    song_json = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return f"""<div class="vj-inline" id="{ident}">
<style>{payload.static_text("studio.css")}</style>
<div class="vj-bar"><b>{html.escape(data["name"])}</b>
<span>{data["bars"]} bars · {data["tempo"]:g} bpm · notes: {html.escape(summary)}</span></div>
<div class="vj-bar"><button type="button" data-act="play">▶ Play</button><button type="button" data-act="stop">■ Stop</button>
<button type="button" data-act="out">−</button><button type="button" data-act="fit">Fit</button>
<button type="button" data-act="in">+</button><span class="vj-how">{html.escape(how)}</span></div>
<div class="vj-host"></div>
<audio class="vj-audio" preload="auto" src="{src}"></audio>
<script>
{payload.static_text("roll.js")}
(function () {{
  var box = document.getElementById("{ident}");
  var roll = new VaejaxRoll.Roll(box.querySelector(".vj-host"), {{ laneHeight: {int(lane_height)},
    onSeek: function (b) {{ player.seek(b); }} }});
  var player = new VaejaxRoll.Player(box.querySelector(".vj-audio"), roll, {{
    onState: function (on) {{ box.querySelector('[data-act="play"]').textContent = on ? "❚❚ Pause" : "▶ Play"; }} }});
  roll.setSong({song_json});
  box.querySelector('[data-act="play"]').onclick = function () {{ player.toggle(); }};
  box.querySelector('[data-act="stop"]').onclick = function () {{ player.stop(); }};
  box.querySelector('[data-act="in"]').onclick = function () {{ roll.zoom(1.5); }};
  box.querySelector('[data-act="out"]').onclick = function () {{ roll.zoom(1 / 1.5); }};
  box.querySelector('[data-act="fit"]').onclick = function () {{ roll.fit(); }};
}})();
</script>
</div>"""  # noqa: E501 (one line of markup)


def show(song, *, sample_rate: int = SAMPLE_RATE, audio: bool = True, cfg: DataConfig = DataConfig()):
    """An IPython HTML object with the song's piano roll (five lanes, bar lines, zoom, scroll, a playhead) and
    a player of its General MIDI audio. `song`: a `pypianoroll.Multitrack` as `TrainedModel` methods return;
    `audio=False` leaves the sound out (smaller notebooks)."""
    from IPython.display import HTML

    return HTML(show_html(song, sample_rate=sample_rate, audio=audio, cfg=cfg))
