"""The experiment config: YAML parsing, typed config records, units and size checks."""
