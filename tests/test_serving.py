"""The personalisation service over real HTTP: a uvicorn server on 127.0.0.1 started by the test, httpx.

Covers the endpoints, the 4xx errors, a restart (even a kill) that keeps every answer, and
concurrent answers for one learner that lose nothing. The model file is a small untrained bundle:
the service's behaviour does not depend on how well the model was trained (its last layer
is randomised so that answers move its predictions).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

httpx_module = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from course_lib.models.amortized import AmortizedAdapter, GradientTeacher  # noqa: E402
from course_lib.models.meta_irt import MetaIRT  # noqa: E402
from course_lib.serving.model import save_bundle  # noqa: E402

N_ITEMS, DIMS = 12, 2
ROOT = Path(__file__).resolve().parents[1]
STARTUP_S = 300


class httpx:  # noqa: N801 - the httpx calls of these tests, with a timeout that suits a loaded CI machine
    HTTPError = httpx_module.HTTPError
    get = staticmethod(lambda url, **kw: httpx_module.get(url, **{"timeout": 60, **kw}))
    post = staticmethod(lambda url, **kw: httpx_module.post(url, **{"timeout": 60, **kw}))
    Client = staticmethod(lambda **kw: httpx_module.Client(**{"timeout": 60, **kw}))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    states = {k: MetaIRT(N_ITEMS, DIMS, seed=k).state_dict() for k in (1, 5)}
    teacher = GradientTeacher(states, alpha=1.0, steps=3)
    options = {"width": 8, "hidden": 8, "seed": 0}
    student = AmortizedAdapter(N_ITEMS, DIMS, **options, item_a=states[5]["item_a"], item_d=states[5]["item_d"])
    torch.nn.init.normal_(student.mlp[-1].weight, std=1.0, generator=torch.Generator().manual_seed(0))
    return save_bundle(tmp_path_factory.mktemp("model") / "bundle.pt", teacher, student, "amortized", options)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m course_lib.serving`` in a subprocess on a free loopback port."""

    def __init__(self, model: Path, db: Path) -> None:
        self.model, self.db, self.port, self.proc = model, db, _free_port(), None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> "Server":
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        # The log goes to a file: a pipe nobody reads could fill and block the server.
        self.log = self.db.with_suffix(".log").open("w+b")
        self.proc = subprocess.Popen([sys.executable, "-m", "course_lib.serving", "--port", str(self.port),
                                      "--model", str(self.model), "--db", str(self.db)], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        # Importing torch, FastAPI and the model takes seconds on an idle machine, minutes on a loaded one.
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"server exited: {self.log.read().decode()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not answer /health within {STARTUP_S} s")

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill() if kill else self.proc.terminate()
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(model_file, tmp_path_factory):
    s = Server(model_file, tmp_path_factory.mktemp("db") / "learners.sqlite3").start()
    yield s
    s.stop()


def test_health(server):
    r = httpx.get(server.url + "/health")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["n_items"] == N_ITEMS


@pytest.mark.parametrize("model", ["student", "teacher"])
def test_answer_updates_predictions_of_every_item(server, model):
    learner = f"ada-{model}"
    first = httpx.post(f"{server.url}/learners/{learner}/responses?model={model}", json={"item": 3, "correct": 1})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["n_answers"] == 1 and len(body["predictions"]) == N_ITEMS
    assert all(0 < p < 1 for p in body["predictions"])
    second = httpx.post(f"{server.url}/learners/{learner}/responses?model={model}", json={"item": 4, "correct": 0})
    assert second.json()["n_answers"] == 2
    assert second.json()["predictions"] != body["predictions"]      # the answer changed the learner's model
    state = httpx.get(f"{server.url}/learners/{learner}?model={model}").json()
    assert state["answers"] == [{"item": 3, "correct": 1}, {"item": 4, "correct": 0}]
    assert state["predictions"] == pytest.approx(second.json()["predictions"], abs=1e-6)


def test_next_item_is_the_most_informative_unanswered_item(server, model_file):
    from course_lib.serving.app import Personalizer

    for item, correct in ((0, 1), (5, 0)):
        httpx.post(f"{server.url}/learners/cat/responses", json={"item": item, "correct": correct})
    body = httpx.get(f"{server.url}/learners/cat/next-item").json()
    p = Personalizer(model_file)
    info = p.information(p.predict([(0, 1), (5, 0)], "student"), 2, "student")
    info[[0, 5]] = -1
    assert body["item"] == int(info.argmax()) and body["item"] not in (0, 5)
    assert body["information"] == pytest.approx(float(info.max()), rel=1e-5)
    new = httpx.get(f"{server.url}/learners/newcomer/next-item")      # a learner with no answer gets one too
    assert new.status_code == 200 and 0 <= new.json()["item"] < N_ITEMS


def test_every_item_answered_is_a_409(server):
    for j in range(N_ITEMS):
        httpx.post(f"{server.url}/learners/done/responses", json={"item": j, "correct": j % 2})
    r = httpx.get(f"{server.url}/learners/done/next-item")
    assert r.status_code == 409 and "every item" in r.json()["detail"]


@pytest.mark.parametrize("body, words", [
    ({"item": 999, "correct": 1}, "unknown item 999"),
    ({"item": -1, "correct": 1}, "unknown item -1"),
    ({"item": 2, "correct": 2}, "correct must be 0 (wrong) or 1 (correct)"),
    ({"item": 2, "correct": "yes"}, "correct"),
    ({"item": 2.5, "correct": 1}, "item"),
    ({"item": 2}, "correct"),
    ({"item": 2, "correct": 1, "extra": 0}, "extra"),
])
def test_bad_answers_get_a_422_that_says_why(server, body, words):
    r = httpx.post(f"{server.url}/learners/bob/responses", json=body)
    assert r.status_code == 422 and words in r.json()["detail"], r.text


def test_malformed_json_bad_ids_unknown_learners_and_models_are_4xx(server):
    r = httpx.post(f"{server.url}/learners/bob/responses", content=b"{item: 1",
                   headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["detail"]
    r = httpx.post(f"{server.url}/learners/{'x' * 65}/responses", json={"item": 1, "correct": 1})
    assert r.status_code == 422 and "not valid" in r.json()["detail"]
    r = httpx.get(f"{server.url}/learners/nobody")
    assert r.status_code == 404 and "post an answer" in r.json()["detail"]
    r = httpx.get(f"{server.url}/learners/bob/next-item?model=oracle")
    assert r.status_code == 422 and "model" in r.json()["detail"]
    assert httpx.get(f"{server.url}/learners/bob").status_code == 404   # none of the bad answers was stored


@pytest.mark.parametrize("model", ["student", "teacher"])
def test_concurrent_answers_for_one_learner_lose_nothing(server, model):
    def post(i: int) -> int:
        with httpx.Client() as c:
            return c.post(f"{server.url}/learners/crowd-{model}/responses?model={model}",
                          json={"item": i % N_ITEMS, "correct": i % 2}).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(post, range(96)))
    assert codes == [200] * 96
    state = httpx.get(f"{server.url}/learners/crowd-{model}").json()
    assert state["n_answers"] == 96
    got = sorted((a["item"], a["correct"]) for a in state["answers"])
    assert got == sorted((i % N_ITEMS, i % 2) for i in range(96))


def test_restart_and_kill_keep_every_learners_answers(model_file, tmp_path):
    s = Server(model_file, tmp_path / "state.sqlite3").start()
    sent: dict[str, list[tuple[int, int]]] = {}

    def answer_and_snapshot(round_: int) -> dict:
        for i in range(4):
            learner = f"l{i}"
            for j in range(i + 1):
                item, correct = (round_ * 5 + j) % N_ITEMS, (i + j + round_) % 2
                assert httpx.post(f"{s.url}/learners/{learner}/responses",
                                  json={"item": item, "correct": correct}).status_code == 200
                sent.setdefault(learner, []).append((item, correct))
        return {lr: httpx.get(f"{s.url}/learners/{lr}").json()["predictions"] for lr in sent}

    def check(before: dict) -> None:
        for learner, answers in sent.items():
            after = httpx.get(f"{s.url}/learners/{learner}").json()
            assert [(a["item"], a["correct"]) for a in after["answers"]] == answers
            assert after["predictions"] == pytest.approx(before[learner], abs=1e-6)

    try:
        before = answer_and_snapshot(0)
        s.stop()                    # a clean shutdown (SIGTERM) ...
        s.start()
        check(before)
        before = answer_and_snapshot(1)
        s.stop(kill=True)           # ... and a crash (SIGKILL) right after the last answer
        s.start()
        check(before)
    finally:
        s.stop()


def test_model_file_is_loaded_with_weights_only(model_file, tmp_path):
    from course_lib.serving.model import load_bundle

    bundle = torch.load(model_file, weights_only=True)           # plain data: loads without pickled classes
    assert bundle["format"] == "course_lib.serving/1"
    bad = tmp_path / "bad.pt"
    torch.save({"format": "something else"}, bad)
    with pytest.raises(ValueError, match="not a course_lib.serving/1 model file"):
        load_bundle(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_bundle(tmp_path / "missing.pt")
