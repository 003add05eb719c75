"""vaejax studio: generate, arrange, vary and listen in the browser (`python -m vaejax.studio`, or
`vaejax-studio`), and the same piano roll and player inline in a notebook (`vaejax.show(song)`).

`payload` turns a song into what the page draws (notes per track) and plays (WAV bytes); `server` is the
local web application (Starlette on uvicorn); `inline` embeds the roll and player in a notebook cell; the
page itself is plain HTML, CSS and JavaScript in `static/`, shipped with the package (nothing is fetched
from the internet).
"""
