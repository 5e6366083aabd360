"""The `tracetune` command line: the typer app and the registration of every command."""

from __future__ import annotations

import typer

from curation.ingest.formats import help_text
from tracetune import config_cmd
from tracetune.commands import adapters as adapters_cmds
from tracetune.commands import curation as curation_cmds
from tracetune.commands import demo as demo_cmds
from tracetune.commands import orchestration as orchestration_cmds
from tracetune.commands import review as review_cmds
from tracetune.commands import training as training_cmds

# The command modules import their heavy dependencies (DuckDB, the ingest pipeline, torch) inside the
# commands: parser worker processes re-import this module when they start, and should not pay for them.

app = typer.Typer(
    help="Turn production LLM chat traces into fine-tuning datasets and LoRA adapters.\n\n"
    "Trace formats read by `ingest` (auto-detected per record):\n\n" + help_text().replace("\n", "\n\n"),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("init")(config_cmd.init)
app.add_typer(config_cmd.app, name="config")
app.command("ingest")(curation_cmds.ingest_cmd)
app.command("curate")(curation_cmds.curate)
app.command("rules")(curation_cmds.rules)
app.command("train")(training_cmds.train)
app.command("evaluate")(training_cmds.evaluate)
app.command("quarantine")(curation_cmds.quarantine)
app.command("demo")(demo_cmds.demo)

app.add_typer(review_cmds.app, name="review")
app.add_typer(adapters_cmds.app, name="adapters")
app.command("deploy")(orchestration_cmds.deploy)
app.command("serve")(orchestration_cmds.serve)


def main() -> None:
    """Run the `tracetune` app."""
    app()


if __name__ == "__main__":
    main()
