"""``python -m sweep [overrides...]``: see README.md and sweep/app.py."""

from sweep.app import cli

if __name__ == "__main__":
    cli()
