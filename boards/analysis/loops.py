#!/usr/bin/env python3
"""Prints the densest inner loop of a function in an assembly listing (rustc --emit asm):
the loop (a label and the backward branch to it) with the most multiply-accumulate
instructions per instruction, as plain instructions llvm-mca reads.

Usage: loops.py LISTING.s FUNCTION-SUBSTRING > loop.s   (the chosen loop's size on stderr)
"""
import re
import sys

MAC = re.compile(r"^\s+(sdot|udot|smull2?|smlal2?|sadalp|fmla|mla)\s")
BRANCH = re.compile(r"\s(b(\.\w+)?|cbn?z|tbn?z)\s.*?(\.LBB\w+)$")


def main():
    lines = open(sys.argv[1]).read().split("\n")
    want = sys.argv[2]
    starts = [i for i, l in enumerate(lines) if l.endswith(":") and want in l and l.startswith("_ZN")]
    if len(starts) != 1:
        sys.exit(f"{want}: {len(starts)} functions match in {sys.argv[1]}")
    start = starts[0]
    end = next(i for i in range(start + 1, len(lines)) if lines[i].strip().startswith(".size"))
    body = [l for l in lines[start:end] if not re.match(r"\s*(\.(cfi|loc|p2align|file)|//)", l)]
    labels = {l[:-1]: i for i, l in enumerate(body) if re.match(r"^\.LBB\w+:$", l)}
    best = None
    for i, l in enumerate(body):
        m = BRANCH.search(l)
        if m and m.group(3) in labels and labels[m.group(3)] < i:
            ins = [x for x in body[labels[m.group(3)] : i + 1] if x.startswith("\t")]
            macs = sum(1 for x in ins if MAC.match(x))
            if macs and (best is None or macs / len(ins) > best[0]):
                best = (macs / len(ins), ins)
    if best is None:
        sys.exit(f"{want}: no loop with multiply-accumulate instructions")
    print(f"{want}: {len(best[1])} instructions", file=sys.stderr)
    print("\n".join(best[1]))


main()
