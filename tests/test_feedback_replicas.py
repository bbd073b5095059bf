"""Feedback across replicas (issue 11): two real `modelobs serve model` processes share one
store; each label goes to the OTHER process right after the prediction was answered, before
that process's buffer reached the store. Every label is accepted exactly once, no 404."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import httpx

from .conftest import VALID_RECORD
from .stores import model_env, model_replicas, stored

PAIRS = 1000
CONCURRENCY = 32


async def _predict_then_label_elsewhere(urls: list[str]) -> tuple[dict[str, str], Counter]:
    """PAIRS predictions made by the first replica, each labelled at the second one at once.

    One direction on purpose: a replica writes its own buffer out before it answers a
    label (so a label sent back to where the prediction was made never waits); labels
    sent both ways would keep both buffers flushed and hide the race this test is for."""
    labels: dict[str, str] = {}
    answers: Counter = Counter()
    async with httpx.AsyncClient(timeout=30) as client:

        async def pair(i: int) -> None:
            made, other = urls
            r = await client.post(f"{made}/predict", json={"record": VALID_RECORD})
            assert r.status_code == 200, r.text
            pid = r.json()["predictions"][0]["prediction_id"]
            label = ("stay", "churn")[i % 2]
            f = await client.post(f"{other}/feedback", json={"prediction_id": pid, "label": label})
            answers[(f.status_code, f.json().get("status"))] += 1
            labels[pid] = label

        async def worker(k: int) -> None:
            for i in range(k, PAIRS, CONCURRENCY):
                await pair(i)

        await asyncio.gather(*(worker(k) for k in range(CONCURRENCY)))
    return labels, answers


def test_cross_replica_feedback_race(store_db: str, model_dir: Path, tmp_path: Path) -> None:
    # Replicas write their buffer every 0.5 s: nearly every label arrives before the
    # prediction it names is in the store (MODELOBS_FEEDBACK_WAIT_S=0 makes most of them 404).
    env = model_env(store_db, model_dir, MODELOBS_PREDICTION_LOG_FLUSH_INTERVAL_S="0.5")
    with model_replicas(2, env, tmp_path) as urls:
        labels, answers = asyncio.run(_predict_then_label_elsewhere(urls))
        assert answers == {(200, "recorded"): PAIRS}  # 0 wrong 404s, none twice

        pid, label = next(iter(labels.items()))
        other = "churn" if label == "stay" else "stay"
        for url in urls:  # the same answers whichever replica is asked
            same = httpx.post(f"{url}/feedback", json={"prediction_id": pid, "label": label})
            assert (same.status_code, same.json()["status"]) == (200, "unchanged")
            clash = httpx.post(f"{url}/feedback", json={"prediction_id": pid, "label": other})
            assert clash.status_code == 409
            assert clash.json()["error"]["reason"] == "label_conflict"
            for unknown in (str(uuid.uuid4()), "no-such-id"):
                missing = httpx.post(
                    f"{url}/feedback", json={"prediction_id": unknown, "label": "stay"}
                )
                assert missing.status_code == 404
                assert missing.json()["error"]["field"] == "prediction_id"
            looked_up = httpx.get(f"{url}/predictions/{pid}").json()
            assert looked_up["true_label"] == label

    labelled = stored(store_db, "labels_after")
    assert len(labelled) == PAIRS  # one label row per prediction: exactly once
    assert {r.prediction_id: r.true_label for r in labelled} == labels
    assert len(stored(store_db)) == PAIRS
