"""Markdown tables of the evaluation and benchmark reports."""

from evaluation.tables import markdown_table


def test_markdown_table_has_a_header_a_separator_and_one_line_per_row() -> None:
    table = markdown_table(
        ("photo", "faces", "gain"), [("smiling", 1, "+6.24 dB"), ("acne", 3, "-")]
    )
    assert table.splitlines() == [
        "| photo | faces | gain |",
        "|---|---|---|",
        "| smiling | 1 | +6.24 dB |",
        "| acne | 3 | - |",
    ]


def test_a_table_without_rows_is_its_header() -> None:
    assert markdown_table(("a", "b"), []) == "| a | b |\n|---|---|"
