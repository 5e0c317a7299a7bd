"""Writes one benchmark's section of docs/benchmarks.md, leaving the other benchmarks' sections as they are.

Usage from a bench script: python3 bench/sections.py NAME < section.md
"""
import re
import sys

HEADER = """# Benchmarks

Written by the scripts in `bench/` (each owns its section); do not edit by hand. Each ratio compares
crmfs with raw curl (or with itself) measured in the same run against the same sandbox, since these
machines are noisy. Higher is better.
"""

name = sys.argv[1]
section = sys.stdin.read().strip()
path = "docs/benchmarks.md"
try:
    text = open(path).read()
except FileNotFoundError:
    text = HEADER
if not text.startswith(HEADER):
    text = HEADER  # the single-file layout of earlier runs: start over
block = f"<!-- {name} -->\n{section}\n<!-- /{name} -->"
pattern = re.compile(rf"<!-- {re.escape(name)} -->.*?<!-- /{re.escape(name)} -->", re.S)
text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
open(path, "w").write(text)
print(section)
