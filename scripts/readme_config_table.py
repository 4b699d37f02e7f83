"""Rewrite README's configuration table from streams/config.py (a test checks they match)."""
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from streams.config import settings_table_markdown  # noqa: E402

readme = Path(__file__).resolve().parent.parent / "README.md"
text = readme.read_text()
table = re.compile(r"\| Variable \| Default \| Meaning \|\n(\|.*\|\n)+")
readme.write_text(table.sub(lambda _: settings_table_markdown() + "\n", text, count=1))
