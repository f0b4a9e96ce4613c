"""The ``quorate`` command line: ``app`` is the console script entry."""

from __future__ import annotations

import typer

from . import backup, groups, kv, members, recovery
from .agent import agent
from .demo import demo
from .status import status
from .recover import recover
from .updown import down, up

app = typer.Typer(
    name="quorate",
    help="quorate: a self-healing cluster manager on a Raft-replicated store.\n\n"
         "Exit codes: 0 ok, 1 the cluster refused or could not be reached, 2 bad usage.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("agent")(agent)
app.command("status")(status)
app.add_typer(members.app, name="members")
app.add_typer(kv.app, name="kv")
app.add_typer(groups.app, name="group")
app.add_typer(groups.instances_app, name="instances")
app.add_typer(recovery.app, name="recovery")
app.add_typer(backup.app, name="backup")
app.command("recover")(recover)
app.command("up")(up)
app.command("down")(down)
app.command("demo")(demo)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
