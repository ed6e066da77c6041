"""``import mpips`` gives every name the README's Python section uses."""
import re
import subprocess
import sys

from tests.helpers.data import REPO_ROOT


def python_section() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    start = text.index("## Using mpips from Python")
    return text[start:text.index("\n## ", start + 1)]


def test_every_name_the_readme_uses_is_an_attribute_of_mpips():
    section = python_section()
    modules = {p.stem for p in (REPO_ROOT / "mpips").iterdir()}
    named = {m for m in re.findall(r"\bmpips\.([A-Za-z_]\w*)", section) if m not in modules}
    called = set(re.findall(r"`[^`]*?\b(make_filter|register_filter|register_rule)\(", section))
    names = sorted(named | called)
    assert "init" in names and "make_filter" in names, names
    code = ("import mpips, sys\n"
            "missing = [n for n in sys.argv[1:]\n"
            "           if not hasattr(mpips, n) or n not in mpips.__all__]\n"
            "print(missing)\n")
    proc = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
