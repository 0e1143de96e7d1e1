#!/usr/bin/env python3
"""Regenerates the fuzz seed corpus (test/Fuzz/corpus) from the lit tests:
each `// -----` split of each test/**/*.mlir, without its comment lines."""

import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "test" / "Fuzz" / "corpus"


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.mlir"):
        old.unlink()
    count = 0
    for test in sorted((ROOT / "test").rglob("*.mlir")):
        if "Fuzz" in test.parts:
            continue
        for part in test.read_text().split("// -----"):
            lines = [l for l in part.splitlines() if not l.lstrip().startswith("//")]
            text = "\n".join(lines).strip() + "\n"
            if len(text) < 8:
                continue
            name = f"{test.stem}-{hashlib.sha1(text.encode()).hexdigest()[:10]}.mlir"
            (OUT / name).write_text(text)
            count += 1
    print(f"{count} seeds in {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
