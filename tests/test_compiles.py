"""Generation compiles each of its programs once: a model restored from a run's checkpoints (parameters on
the device) draws a song window after window with one compiled window program, and arranging at a density
draws the song with the program its density search compiled."""

import numpy as np
import pytest

from vaejax import trained_model
from vaejax.config import PIANO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model(tiny_run):
    return trained_model.load(tiny_run)


def test_a_long_song_draws_every_window_with_one_program(model):
    window = model._prior_windows["song"]
    before = window._cache_size()
    bars = 4 * model.cfg.prior.context  # several windows after the first
    model.sample(bars=bars, sigma=0.5, seed=0)
    model.sample(bars=bars, sigma=0.5, seed=1)
    assert window._cache_size() - before <= 1


def test_arranging_at_a_density_draws_with_the_search_program(model, monkeypatch):
    steps = model.cfg.data.steps
    piano = np.zeros((12 * steps, model.cfg.data.num_pitches), bool)
    piano[:: steps // 4, 40] = True
    calls = []
    real = trained_model.TrainedModel._prior_draw

    def spy(self, which, num, bars, **kw):
        calls.append((which, num, bars))
        return real(self, which, num, bars, **kw)

    monkeypatch.setattr(trained_model.TrainedModel, "_prior_draw", spy)
    window = model._prior_windows["band"]
    model.arrange(piano, tracks="drums,bass", density=0.5, seed=0)
    assert len(calls) >= 2 and len(set(calls)) == 1, calls  # the search's draws and the song's: one shape
    compiled = window._cache_size()
    model.arrange(piano, tracks="drums,bass", density=0.5, seed=1)
    assert window._cache_size() == compiled
    calls.clear()
    band = model.arrange(piano, tracks="drums,bass", density=None, seed=0)
    assert [c[1] for c in calls] == [1]  # as the prior reads the piano: one song drawn
    assert band.tracks[PIANO].pianoroll.any()
