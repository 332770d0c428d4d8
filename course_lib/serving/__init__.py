"""A small real serving component for chapter 10: FastAPI app, SQLite learner state, the model file.

``python -m course_lib.serving --port 8000`` (or ``make serve``) starts it on 127.0.0.1.
"""
