"""`shadow console`: every pod's evidence (the evidence store, shadow/publish/evidence*.py)
in one web page. Above `publish` (it renders publish's views and templates)."""
