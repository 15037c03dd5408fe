"""``python -m vbkernels``: the ``vbkernels`` command line."""

from vbkernels.cli import main

if __name__ == "__main__":
    main(prog_name="vbkernels")
