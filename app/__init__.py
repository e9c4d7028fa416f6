"""Telltale's application layer: CLI, settings, policy, step-up, jobs, charts and the Streamlit shell.

Importing this package does not import Streamlit, so the CLI starts fast.
"""
