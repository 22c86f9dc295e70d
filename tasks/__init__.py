"""Prefect tasks grouped by side effect: plan, render, deliver."""
