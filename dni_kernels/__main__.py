"""Command line: `python -m dni_kernels demo [--epochs N] [--out PATH]`."""

import argparse

from . import demo


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dni_kernels")
    commands = parser.add_subparsers(dest="command", required=True)
    demo.add_arguments(commands.add_parser("demo", help=demo.__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo.run(args)


if __name__ == "__main__":
    main()
