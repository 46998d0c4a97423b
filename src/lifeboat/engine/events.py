"""Moved to lifeboat.events (below engine and boot, so that neither package imports the other's insides).

Kept only so that engine modules being changed on other branches still import; import lifeboat.events."""

from lifeboat.events import *  # noqa: F403
from lifeboat.events import Event, LogLine, Outcome, Progress, ProgressSink, StepFinished, StepStarted, discard

__all__ = ["Event", "LogLine", "Outcome", "Progress", "ProgressSink", "StepFinished", "StepStarted", "discard"]
