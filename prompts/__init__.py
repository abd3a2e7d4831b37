"""Prompt templates (Markdown + Jinja2) and the hypothesis catalogue (YAML), with a
loader. Data only: no logic lives here."""
