"""Meta-learning algorithms on torch.func: ProtoNet (chapter 02), MAML / FOMAML / Meta-SGD
(chapter 03) and Reptile (chapter 04)."""

from course_lib.algorithms.maml import MAML, inner_adapt, maml_loss
from course_lib.algorithms.reptile import Reptile, reptile_direction

__all__ = ["MAML", "Reptile", "ProtoNet", "inner_adapt", "maml_loss", "reptile_direction"]


def __getattr__(name: str):
    # ProtoNet lives in its own module (chapter 02); imported lazily so that each algorithm's
    # module stays independent.
    if name == "ProtoNet":
        from course_lib.algorithms.protonet import ProtoNet

        return ProtoNet
    raise AttributeError(name)
