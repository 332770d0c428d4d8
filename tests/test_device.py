"""course_lib.device: device choice, seeding and the device report."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from course_lib.device import describe, get_device, seed_everything


@pytest.fixture(autouse=True)
def no_course_device(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)


def expected_auto() -> str:
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


def test_auto_picks_the_best_available_device():
    assert get_device().type == expected_auto()
    assert get_device("auto").type == expected_auto()
    assert get_device("AUTO").type == expected_auto()


def test_cpu_always_works():
    assert get_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["gpu", "tpu", "", "cuda:x"])
def test_unknown_device_name_raises(name):
    with pytest.raises(ValueError, match="device must be one of"):
        get_device(name) if name else get_device("nonsense")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_missing_cuda_raises_with_advice():
    with pytest.raises(ValueError, match="CUDA was requested"):
        get_device("cuda")


def test_course_device_environment_variable_is_respected(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    monkeypatch.setenv("COURSE_DEVICE", "quantum")
    with pytest.raises(ValueError, match="COURSE_DEVICE"):
        get_device()


def test_explicit_choice_beats_the_environment_variable(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "quantum")
    assert get_device("cpu") == torch.device("cpu")


def draws(seed: int):
    generator = seed_everything(seed)
    return (random.random(), np.random.rand(3), torch.rand(3), torch.rand(3, generator=generator))


def test_seed_everything_repeats_every_generator():
    first, second = draws(7), draws(7)
    assert first[0] == second[0]
    np.testing.assert_array_equal(first[1], second[1])
    assert torch.equal(first[2], second[2]) and torch.equal(first[3], second[3])
    other = draws(8)
    assert not torch.equal(first[2], other[2])


def test_seed_everything_returns_a_seeded_generator():
    generator = seed_everything(3)
    assert isinstance(generator, torch.Generator)
    assert generator.initial_seed() == 3


@pytest.mark.parametrize("seed", [-1, 1.5, "0", None])
def test_bad_seed_raises(seed):
    with pytest.raises(ValueError, match="seed"):
        seed_everything(seed)


def test_describe_reports_device_and_versions():
    info = describe(torch.device("cpu"))
    assert info["device"] == "cpu" and info["torch"] == torch.__version__
    assert int(info["cpu_threads"]) >= 1
    assert describe()["device"] == str(get_device())
