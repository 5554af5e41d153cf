"""Switching a built model's modules to a subclass that computes the same, faster."""

__all__ = ["switch_modules"]


def switch_modules(model, original, replacement):
    """Make every module of ``model`` whose type is exactly ``original`` a ``replacement`` (a
    subclass adding no state: only methods change), in place.

    Returns:
        int: how many were switched.
    """
    switched = 0
    for module in model.modules():
        if type(module) is original:
            module.__class__ = replacement
            switched += 1
    return switched
