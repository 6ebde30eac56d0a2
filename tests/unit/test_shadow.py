"""The shadow lane lets go of the models it ran: a model switch waits for the old champion to be freed."""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import numpy as np

from bentos.shadow import ShadowLane
from tests.helpers import wait_for


class Model:
    """What the lane calls on a model: its labels and class probabilities."""

    def __init__(self) -> None:
        self.labels = ["refund", "card"]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return np.tile([0.7, 0.3], (len(texts), 1))


def test_a_finished_feedback_job_does_not_keep_the_champion_alive() -> None:
    lane = ShadowLane(Model(), name="challenger", version="2", fraction=1.0, max_queued=8).start()
    try:
        champion = Model()
        gone = weakref.ref(champion)
        lane.offer_feedback(["refund my order"], ["refund"], champion)
        del champion
        # no job comes after this one: the idle lane must not be what keeps the champion
        wait_for(lambda: gone() is None, 30, "the champion freed once its feedback job ran")
    finally:
        lane.stop()


def test_stop_releases_the_challenger() -> None:
    challenger = Model()
    gone = weakref.ref(challenger)
    lane = ShadowLane(challenger, name="challenger", version="2", fraction=1.0, max_queued=8).start()
    lane.offer(["refund my order", "card not working"], ["refund", "card"])
    del challenger
    lane.stop()
    del lane
    assert gone() is None
