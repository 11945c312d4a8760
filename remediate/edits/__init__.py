"""Pure `str -> str` edits: a line present or absent (textpatch), a Python assignment or statement (pyedit)."""
