"""The FastAPI app a tutoring front end calls: answers in, personalised predictions and next item out.

Derived in chapter 10, section 6. Endpoints (``model`` query parameter: ``student`` (default), the
distilled one-pass student, or ``teacher``, chapter 05's gradient-adapted meta-learner):

* ``POST /learners/{id}/responses`` body ``{"item": int, "correct": 0 | 1}`` → the stored answer
  count and P(correct) for every item of the bank after this answer;
* ``GET /learners/{id}/next-item`` → the unanswered item of largest Fisher information
  p(1 − p)‖aⱼ‖² (chapter 07's max-information rule, `course_lib.adaptive.cat.select_items`);
* ``GET /learners/{id}`` → the learner's answers and predictions; ``GET /health``.

Bad input gets a 4xx whose ``detail`` says what was wrong, never a 500. The model file is loaded
once, at start, with ``weights_only=True`` (`course_lib.serving.model.load_bundle`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Literal

import torch
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StrictInt, field_validator

from course_lib.serving.model import load_bundle
from course_lib.serving.state import LearnerStore

__all__ = ["create_app", "Answer", "Personalizer"]

ModelName = Literal["student", "teacher"]


class Answer(BaseModel):
    """One answer: the item's index in the bank and whether it was correct (1) or not (0)."""

    model_config = ConfigDict(extra="forbid")
    item: StrictInt
    correct: StrictInt

    @field_validator("correct")
    @classmethod
    def _zero_or_one(cls, v: int) -> int:
        if v not in (0, 1):
            raise ValueError(f"correct must be 0 (wrong) or 1 (correct), got {v}")
        return v


class Personalizer:
    """Predictions and item information from a learner's answers, by the student or the teacher."""

    def __init__(self, model_path: str | Path) -> None:
        self.teacher, self.student = load_bundle(model_path)
        self.n_items = self.teacher.n_items
        self.item_a = getattr(self.student, "item_a", None)
        # torch.func transforms (the teacher's grad inside vmap) must not run in two threads at once:
        # concurrent calls trip an internal assert in functorch. The student is plain torch: no lock.
        self._teacher_lock = threading.Lock()
        for name in ("student", "teacher"):  # first calls pay one-off set-up costs: pay them at start
            self.predict([(0, 1)], name)

    def predict(self, answers: list[tuple[int, int]], model: ModelName) -> torch.Tensor:
        """P(correct) of every item ``[n_items]`` given the learner's ``[(item, correct), ...]``."""
        rows = answers or [(0, 0)]
        items = torch.tensor([[i for i, _ in rows]], dtype=torch.long)
        ys = torch.tensor([[c for _, c in rows]], dtype=torch.float32)
        mask = torch.full(items.shape, float(bool(answers)))
        with torch.no_grad():
            if model == "teacher":
                with self._teacher_lock:
                    return torch.sigmoid(self.teacher.logits(items, ys, mask > 0))[0]
            return torch.sigmoid(self.student(items, ys, mask))[0]

    def information(self, prob: torch.Tensor, n_answers: int, model: ModelName) -> torch.Tensor:
        """Fisher information p(1 − p)‖aⱼ‖² of every item (the teacher's aⱼ if the student has none)."""
        if model == "teacher" or self.item_a is None:
            return self.teacher.information(prob[None], n_answers)[0]
        return prob * (1 - prob) * self.item_a.detach().pow(2).sum(1)


def _readable(err: RequestValidationError) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}")
    return "; ".join(parts) + ' (send JSON like {"item": 3, "correct": 1})'


def create_app(model_path: str | Path, db_path: str | Path, *, synchronous: str = "NORMAL") -> FastAPI:
    """The app, with the model loaded once from ``model_path`` and learner state in ``db_path``."""
    torch.set_num_threads(1)
    model = Personalizer(model_path)
    store = LearnerStore(db_path, synchronous=synchronous)
    app = FastAPI(title="course_lib personalisation service", version="1")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _readable(err)})

    def learner_id(learner: str) -> str:
        try:
            return store.check_id(learner)
        except ValueError as err:
            raise HTTPException(status_code=422, detail=str(err)) from None

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "n_items": model.n_items, "student": type(model.student).__name__,
                "teacher_ks": sorted(model.teacher.learners), "learners": store.n_learners()}

    @app.post("/learners/{learner}/responses")
    def add_response(learner: str, answer: Answer, model_name: ModelName = Query("student", alias="model")) -> dict:
        learner = learner_id(learner)
        if not 0 <= answer.item < model.n_items:
            raise HTTPException(status_code=422, detail=f"unknown item {answer.item}: the item bank has items "
                                                        f"0..{model.n_items - 1}")
        answers = store.add_answer(learner, answer.item, answer.correct)
        prob = model.predict(answers, model_name)
        return {"learner": learner, "n_answers": len(answers), "model": model_name, "predictions": prob.tolist()}

    @app.get("/learners/{learner}/next-item")
    def next_item(learner: str, model_name: ModelName = Query("student", alias="model")) -> dict:
        from course_lib.adaptive.cat import select_items

        learner = learner_id(learner)
        answers = store.answers(learner)
        available = torch.ones(1, model.n_items, dtype=torch.bool)
        available[0, [i for i, _ in answers]] = False
        if not available.any():
            raise HTTPException(status_code=409, detail=f"learner {learner} has answered every item of the bank")
        prob = model.predict(answers, model_name)
        info = model.information(prob, len(answers), model_name)
        j = int(select_items("max_information", available, info[None])[0])
        return {"learner": learner, "item": j, "p_correct": float(prob[j]), "information": float(info[j]),
                "rule": "max_information", "model": model_name, "n_answers": len(answers)}

    @app.get("/learners/{learner}")
    def learner_state(learner: str, model_name: ModelName = Query("student", alias="model")) -> dict:
        learner = learner_id(learner)
        answers = store.answers(learner)
        if not answers:
            raise HTTPException(status_code=404, detail=f"no learner {learner!r}: post an answer to "
                                                        f"/learners/{learner}/responses first")
        prob = model.predict(answers, model_name)
        return {"learner": learner, "n_answers": len(answers), "model": model_name,
                "answers": [{"item": i, "correct": c} for i, c in answers], "predictions": prob.tolist()}

    return app
