"""Feedback (issue #17): keep every correction a user makes, and learn from them.

* :mod:`.store` -- the store (SQLite by default, PostgreSQL by URL; SQLAlchemy Core)
* :mod:`.capture` -- an image + label -> a correction ready to store (what the model saw)
* :mod:`.security` -- Host checking, cross-site refusal and the admin token for the server
* :mod:`.routes` -- the FastAPI router (``/api/feedback...``) and what it expects on app.state
* :mod:`.personal` -- installing / uninstalling the user's personal (fine-tuned) model
"""
