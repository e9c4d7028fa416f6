"""The Streamlit shell: the entry and navigation (`main`), process-wide resources, chart builders,
small UI helpers and what the pages compute beyond the engine (`investigation`, `review`)."""
