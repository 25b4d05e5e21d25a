"""Evaluation results as a table for the terminal."""
from __future__ import annotations

COLUMNS = [("R@1", "r1"), ("R@5", "r5"), ("R@10", "r10"), ("MdR", "medr"), ("MnR", "meanr")]


def format_table(results: dict, title: str) -> str:
    """Rows per score set; text→video then video→text columns, R_mean, and temporal accuracy (overall and per
    hard-negative kind) when present."""
    header = ["scores"] + [f"t2v {c}" for c, _ in COLUMNS] + [f"v2t {c}" for c, _ in COLUMNS] + ["R_mean"]
    sets = [k for k in ("emb", "emb_dsl", "itm") if k in results]
    temporal = sorted({k for s in sets for k in results[s] if k.startswith("temporal_acc")}, key=len)
    header += ["temporal" if k == "temporal_acc" else k.removeprefix("temporal_acc_") for k in temporal]
    rows = []
    for name in sets:
        m = results[name]
        row = [name] + [f"{m[f't2v_{k}']:.1f}" for _, k in COLUMNS] + [f"{m[f'v2t_{k}']:.1f}" for _, k in COLUMNS]
        row.append(f"{m['r_mean']:.2f}")
        row += [f"{m[k]:.1f}" if k in m else "-" for k in temporal]
        rows.append(row)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([title, line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])
