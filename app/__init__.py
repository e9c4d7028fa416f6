"""Telltale's application layer, one subpackage per kind of code:

- `app.engine`: the decision engine (pipeline, training, evidence, policy, step-up, jobs), no Streamlit;
- `app.capture`: the browser capture component and the pure handler of its batches;
- `app.web`: the Streamlit shell (entry, resources, charts, page helpers);
- `app.cli`: the command line; `app.settings`: every setting, shared by all of them.

Importing this package does not import Streamlit, so the CLI starts fast.
"""
