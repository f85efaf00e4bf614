"""``python -m broker``: the same as the ``submarine-broker`` command."""

from broker.cli.main import main

if __name__ == "__main__":
    main()
