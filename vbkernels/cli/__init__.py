"""The ``vbkernels`` command line (click): ``decode``, ``demo``, ``precision``, ``eval``,
``bench``, ``robustness``. ``python -m vbkernels`` runs the same group.

Subcommands are imported only when invoked, so ``vbkernels --help`` stays fast and a
missing optional part (the benchmark suite, the robustness report) fails with a message
instead of an import traceback.
"""

from __future__ import annotations

import importlib

import click

# name -> (module, attribute, one-line help shown by --help without importing the module)
_COMMANDS = {
    "decode": ("vbkernels.cli.decode", "decode",
               "Decode images and videos into depth, normals, labels or colormap values."),
    "demo": ("vbkernels.cli.demo", "demo",
             "Encode, degrade and decode procedural scenes; print errors and speed."),
    "precision": ("vbkernels.cli.precision", "precision",
                  "Depth step of the 8-bit encoding vs depth, as a table and a plot."),
    "eval": ("vbkernels.cli.eval", "eval_group",
             "Score generated depth, normals or segmentation against a benchmark."),
    "bench": ("vbkernels.cli", "bench", "Run the benchmark report (vbkernels.benchmark)."),
    "robustness": ("vbkernels.cli.robustness", "robustness",
                   "Decoding error after JPEG/H.264 degradation (robustness report)."),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(_COMMANDS)

    def get_command(self, ctx, name):
        if name not in _COMMANDS:
            return None
        module_name, attribute, short_help = _COMMANDS[name]
        try:
            command = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            return _unavailable(name, short_help, f"{module_name}.{attribute}", exc)
        if not isinstance(command, click.Command):
            return _unavailable(name, short_help, f"{module_name}.{attribute}",
                                TypeError("not a click command"))
        return command


def _unavailable(name: str, short_help: str, where: str, exc: Exception) -> click.Command:
    """A stand-in that explains why ``name`` cannot run here."""

    @click.command(name, short_help=short_help + " [unavailable]",
                   context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                     "help_option_names": []})
    def command():
        raise click.ClickException(
            f"'vbkernels {name}' is not available in this installation: {where} could not be "
            f"loaded ({type(exc).__name__}: {exc})")

    return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vbkernels")
def main():
    """Decode 'perception as image generation' outputs: depth, normals, segmentation."""


@click.command("bench", context_settings={"ignore_unknown_options": True,
                                          "allow_extra_args": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args):
    """Run the benchmark report; arguments go to ``vbkernels.benchmark.main``."""
    try:
        benchmark = importlib.import_module("vbkernels.benchmark")
        entry = benchmark.main
    except (ImportError, AttributeError) as exc:
        raise click.ClickException(
            "'vbkernels bench' is not available in this installation: vbkernels.benchmark.main "
            f"could not be loaded ({type(exc).__name__}: {exc})") from None
    status = entry(list(args))
    raise SystemExit(status or 0)
