import importlib.util

import pytest

from tfm_fuse.errors import ConfigError
from tfm_fuse.pruning.schedules import (Constant, PolynomialDecay, Stepwise, TfmotAdapter,
                                        as_schedule)


@pytest.mark.parametrize("step, expected", [(0, 0.0), (9, 0.0), (10, 0.5), (10_000, 0.5)])
def test_constant(step, expected):
    assert Constant(0.5, begin_step=10)(step) == expected


@pytest.mark.parametrize("step, expected", [(0, 0.0), (10, 0.1), (60, 0.35), (110, 0.6), (500, 0.6)])
def test_polynomial_decay_linear(step, expected):
    s = PolynomialDecay(0.1, 0.6, begin_step=10, end_step=110, power=1)
    assert s(step) == pytest.approx(expected)


def test_polynomial_decay_matches_tfmot_formula():
    s = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=100, power=3)
    assert s(50) == pytest.approx(0.8 + (0.0 - 0.8) * 0.5 ** 3)


@pytest.mark.parametrize("step, expected", [(0, 0.0), (5, 0.1), (99, 0.1), (100, 0.3), (10**6, 0.5)])
def test_stepwise(step, expected):
    assert Stepwise(boundaries=[5, 100, 200], rates=[0.1, 0.3, 0.5])(step) == expected


@pytest.mark.parametrize("schedule", [
    Constant(0.4, begin_step=3),
    PolynomialDecay(0.0, 0.5, begin_step=2, end_step=20, power=2),
    Stepwise([0, 10], [0.2, 0.4]),
])
def test_config_round_trip(schedule):
    rebuilt = type(schedule).from_config(schedule.get_config())
    assert rebuilt == schedule
    assert [rebuilt(s) for s in range(30)] == [schedule(s) for s in range(30)]


@pytest.mark.parametrize("make, match", [
    (lambda: Constant(1.0), "rate"),
    (lambda: Constant(-0.1), "rate"),
    (lambda: PolynomialDecay(0.0, 0.5, begin_step=100, end_step=10), "ends before it starts"),
    (lambda: PolynomialDecay(0.0, 1.5, begin_step=0, end_step=10), "final_rate"),
    (lambda: Stepwise([10, 5], [0.1, 0.2]), "increasing"),
    (lambda: Stepwise([0], [0.1, 0.2]), "as many"),
    (lambda: as_schedule("half"), "Unknown schedule"),
])
def test_bad_schedules(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


class FakeTfmotPolynomial:
    """Duck-types tfmot's PruningSchedule: __call__(step) -> (should_prune, sparsity)."""

    def __init__(self, begin_step=0, end_step=100):
        self.begin_step, self.end_step = begin_step, end_step

    def __call__(self, step):
        progress = min(1.0, max(0, step - self.begin_step) / (self.end_step - self.begin_step))
        return True, 0.5 * progress

    def _should_prune_in_step(self, step, begin_step, end_step, frequency):
        return True

    def get_config(self):
        return {"begin_step": self.begin_step, "end_step": self.end_step}


def test_tfmot_duck_typed():
    s = as_schedule(FakeTfmotPolynomial())
    assert isinstance(s, TfmotAdapter)
    assert s(50) == pytest.approx(0.25)


def test_tfmot_schedule_ending_before_start():
    with pytest.raises(ConfigError, match="ends before it starts"):
        as_schedule(FakeTfmotPolynomial(begin_step=50, end_step=10))


@pytest.mark.skipif(importlib.util.find_spec("tensorflow_model_optimization") is None,
                    reason="tensorflow_model_optimization is not installed")
def test_real_tfmot_schedules():
    import tensorflow_model_optimization as tfmot

    sched = tfmot.sparsity.keras
    assert as_schedule(sched.ConstantSparsity(0.5, begin_step=0))(10) == pytest.approx(0.5)
    poly = as_schedule(sched.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=100))
    assert 0.0 < poly(50) < 0.5
