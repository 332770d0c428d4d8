"""course_lib.checkpoint: atomic writes, weights_only loads, RNG round trips, clear errors."""

from __future__ import annotations

import pickle

import pytest
import torch

from course_lib.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint


def _state(step: int = 3) -> dict:
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(4, 2)).sum().backward()
    opt.step()
    return {"step": step, "model": model.state_dict(), "optimizer": opt.state_dict(),
            "rng": capture_rng(torch.Generator().manual_seed(1)), "config": {"algo": "maml"}}


def test_round_trip_keeps_every_tensor(tmp_path):
    state = _state()
    path = save_checkpoint(tmp_path / "ck.pt", state)
    back = load_checkpoint(path)
    assert back["step"] == 3 and back["config"] == {"algo": "maml"}
    for k, v in state["model"].items():
        assert torch.equal(back["model"][k], v)
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])


def test_write_is_atomic_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, _state(1))
    save_checkpoint(path, _state(2))
    assert load_checkpoint(path)["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]


def test_failed_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, _state(1))
    bad = _state(2) | {"config": {"fn": lambda: 0}}  # a lambda cannot be pickled: the write fails midway
    with pytest.raises(Exception):
        save_checkpoint(path, bad)
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]


def test_rng_round_trip_replays_the_same_numbers():
    g = torch.Generator().manual_seed(5)
    torch.manual_seed(7)
    saved = capture_rng(g)
    first = (torch.rand(3), torch.rand(3, generator=g))
    restore_rng(saved, g)
    assert torch.equal(torch.rand(3), first[0]) and torch.equal(torch.rand(3, generator=g), first[1])


def test_weights_only_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this would run on load",))

    path = tmp_path / "evil.pt"
    torch.save({"step": 0, "model": {}, "optimizer": {}, "rng": {}, "x": Evil()}, path, pickle_module=pickle)
    with pytest.raises(ValueError, match="weights_only"):
        load_checkpoint(path)


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="without --resume"):
        load_checkpoint(tmp_path / "nothing.pt")
    with pytest.raises(ValueError, match="missing"):
        save_checkpoint(tmp_path / "x.pt", {"step": 1})
    torch.save({"weights": torch.ones(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a course_lib checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "trunc.pt").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ValueError, match="corrupted"):
        load_checkpoint(tmp_path / "trunc.pt")
