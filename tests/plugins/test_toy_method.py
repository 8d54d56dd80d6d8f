"""The toy plugin's own test file, as a plugin author writes it: the contract suite imported, one config named."""

from toy_method import ToyShare

from smhsearch.testing import MethodContract


class TestToyShare(MethodContract):
    config = ToyShare(budget="50%")
