"""``python -m l2optim``: the ``l2optim`` command."""

from l2optim._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
