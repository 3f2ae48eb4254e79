from jaxstyle.cli import run_subcommand

raise SystemExit(run_subcommand("sweep"))
