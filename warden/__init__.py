"""Warden: a governed LangGraph pipeline for support agents that take real actions."""

__version__ = "0.1.0"
