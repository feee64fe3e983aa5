"""``matdisco data``: list and inspect datasets."""

from __future__ import annotations

import typer

from matdisco.cli import handle_errors

app = typer.Typer(help="List and inspect datasets.", no_args_is_help=True)


@app.command("list")
def list_() -> None:
    """List the named datasets and whether they are available here."""
    from matdisco.data import DATASETS, dataset_available

    for name, info in DATASETS.items():
        status = "available" if dataset_available(name) else "missing (needs shared data)"
        typer.echo(f"{name:24s} {info.units:8s} {status:28s} {info.description}")


@app.command()
@handle_errors
def show(name: str = typer.Argument(..., help="Dataset name or CSV/Parquet path."),
         head: int = typer.Option(10, help="Rows to print."),
         clean: bool = typer.Option(False, help="Apply the ElemNet cleaning first.")) -> None:
    """Print the size, target statistics and first rows of a dataset."""
    from matdisco.data import clean_dataset, load_dataset

    df = load_dataset(name)
    if clean:
        df, report = clean_dataset(df)
        typer.echo(f"cleaning: {report}")
    typer.echo(f"{name}: {len(df)} rows")
    typer.echo(df["target"].describe().to_string())
    typer.echo(df.head(head).to_string(index=False))
