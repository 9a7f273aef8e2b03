"""Library-level steps over every video of a run: identities across videos, registries, gallery and subtitle names, timelines, per-character outputs and reports."""
