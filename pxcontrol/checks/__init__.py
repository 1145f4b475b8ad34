"""Checks: probes of the show on a client's own machine, declared in the show, run by the agent.

A check kind is a class (see `kind.py`); the built-in kinds each live in a module of
their own here, plugins add kinds through the `register_check_kinds` hook.
"""

from pxcontrol.checks.kind import Check, CheckContext, CheckFailed, CheckSettings

__all__ = ["Check", "CheckContext", "CheckFailed", "CheckSettings"]
