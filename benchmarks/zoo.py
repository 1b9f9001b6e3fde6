"""The zoo table: every keras.applications constructor and the Keras-examples models, through
fuse, prune (l1, rate 0.5) and strip, with BatchNorm statistics re-estimated on the digits.

Run:  python benchmarks/zoo.py [--only NAME,NAME]   (--only re-runs those rows of the table)
Writes benchmarks/zoo.json and benchmarks/zoo.md (the table in README 'Models it accepts').
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).parents[1]))

from tests.zoo import ALL, check, fuse_ok  # noqa: E402

HERE = Path(__file__).parent


def markdown(rows: list[dict]) -> str:
    out = ["| model | fuse err | strip err | pruned vs original | MACs cut (rate 0.5) | layers → fused "
           "| status |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['model']} | – | – | – | – | – | {r['error']} |")
            continue
        ok = fuse_ok(r) and r["strip_err"] <= 1e-4 and r["caller_untouched"]
        fuse = f"{r['fuse_err']:.1e}" + (f" (float64: fused {r['fuse_err_f64']:.1e}, model "
                                         f"{r['orig_err_f64']:.1e})" if "fuse_err_f64" in r else "")
        out.append(f"| {r['model']} | {fuse} | {r['strip_err']:.1e} | "
                   f"{r['pruning_changed']:.2f} | {r['macs_cut']:.1%} | {r['layers']} → "
                   f"{r['fused_layers']} | {'pass' if ok else 'FAIL'} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated model names (default: all)")
    ap.add_argument("--out", default=str(HERE / "zoo.json"))
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(ALL)
    out = Path(args.out)
    kept = {r["model"]: r for r in json.loads(out.read_text())} if args.only and out.exists() else {}
    rows = []
    for name in names:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row = check(name)
        except Exception as e:  # noqa: BLE001 - reported in the table
            row = {"model": name, "error": f"{type(e).__name__}: {str(e)[:160]}"}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if kept:  # --only: replace those rows of the existing table, keep the others
        kept.update({r["model"]: r for r in rows})
        rows = [kept[n] for n in ALL if n in kept]
    Path(args.out).write_text(json.dumps(rows, indent=1))
    Path(args.out).with_suffix(".md").write_text(markdown(rows) + "\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
