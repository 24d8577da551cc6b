"""Docs derive from the topology: the README's queue table is the generated one."""

from pathlib import Path

from config.topology import markdown_table


def test_readme_queue_table_is_the_topology_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert markdown_table() in readme, "run `pipeline topology` and paste it into README.md"
