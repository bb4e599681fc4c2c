"""Command line: `python -m dni_kernels demo [--epochs N] [--out PATH]` (digits MLP) and
`python -m dni_kernels recall [--sequences N]` (DNILSTM on delayed recall)."""

import argparse

from . import demo, recall


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dni_kernels")
    commands = parser.add_subparsers(dest="command", required=True)
    demo.add_arguments(commands.add_parser("demo", help=demo.__doc__.splitlines()[0]))
    recall.add_arguments(commands.add_parser("recall", help=recall.__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo.run(args)
    else:
        recall.run(args)


if __name__ == "__main__":
    main()
