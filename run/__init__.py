"""``rcd run "PROMPT"``: start a session from any terminal, on this directory's environment or
another machine's, print its URL, and (``--attach``) follow it."""
