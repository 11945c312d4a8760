"""The foundation every layer stands on: errors that say where, results and the one exit-code table, the run
renderings, RunOptions, redaction, the audit trail, typed changes, and the state directory."""
