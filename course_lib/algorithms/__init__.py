"""Meta-learning algorithms on torch.func: ProtoNet (chapter 02), MAML / FOMAML / Meta-SGD and
ProtoMAML (chapter 03) and Reptile (chapter 04).

The maths is pure functions over parameter dictionaries (``phi = inner_adapt(model, theta, x, y,
...)``, ``adapt_batch``, ``maml_loss``, ``reptile_direction``); the classes hold only the state
(θ = the wrapped model's parameters, α) and the training loop of ``functional.fit_loop``.
"""

from course_lib.algorithms.maml import MAML, adapt_batch, inner_adapt, maml_loss, predict_batch
from course_lib.algorithms.reptile import Reptile, reptile_direction

__all__ = ["MAML", "Reptile", "ProtoNet", "ProtoMAML", "inner_adapt", "adapt_batch", "predict_batch", "maml_loss",
           "reptile_direction"]


def __getattr__(name: str):
    # ProtoNet lives in its own module (chapter 02); imported lazily so that each algorithm's
    # module stays independent.
    if name == "ProtoNet":
        from course_lib.algorithms.protonet import ProtoNet

        return ProtoNet
    if name == "ProtoMAML":
        from course_lib.algorithms.protomaml import ProtoMAML

        return ProtoMAML
    raise AttributeError(name)
