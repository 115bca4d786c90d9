"""`shadow rules draft`: rules that almost work, from the PostgreSQL catalog, a bounded
sample of Mongo documents and (optionally) recorded API answers. Stages, in order:
catalog.py + sample.py (read the stores) -> probe.py (id lookups) -> answers.py (routes)
-> propose.py/fields.py (pure matching) -> emit.py (YAML) -> check.py (`--check`);
run.py is the command."""
