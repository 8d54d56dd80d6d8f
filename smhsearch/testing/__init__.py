"""The method contract as an importable pytest suite: a compression method proves itself with a few lines.

A plugin's own test file subclasses :class:`MethodContract` and names one config; pytest
then runs every check of the contract on every tiny model::

    from smhsearch.testing import MethodContract
    from mypkg.methods import MyMethod

    class TestMyMethod(MethodContract):
        config = MyMethod(budget="50%")

smhsearch's own tests run the same class over every registered method. This package needs
pytest (a development dependency; ``import smhsearch`` does not import it).
"""

from ._contract import MethodContract
from ._models import TINY, UserNet, assert_same_state, perturb, tiny

__all__ = ["TINY", "MethodContract", "UserNet", "assert_same_state", "perturb", "tiny"]
