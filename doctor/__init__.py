"""``rcd doctor``: check what rcd needs on this machine and say how to fix what is missing.

:mod:`.parser` (argparse only, for ``rcd --help``) and :mod:`.command` (the run); the checks
themselves are :mod:`daemon.checks`, which ``rcd start`` uses too.
"""
