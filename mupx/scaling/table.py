"""``mupx rules`` output: the plan as a terminal table, with identical layers folded into one row."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .plan import DEFAULT_WD_CONVENTION, WD_CONVENTIONS, Plan, PlanRow


def _g(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def _cells(r: PlanRow, show_blocks: bool) -> list[str]:
    cells = [
        str(r.role), "x".join(map(str, r.shape)), r.update, _g(r.fan_in_mult), _g(r.fan_out_mult), _g(r.depth_mult),
        f"{r.init} {_g(r.init_std)}" if r.init == "normal" else r.init, r.lr_rule, _g(r.lr_mult), _g(r.lr),
        _g(r.wd), _g(r.eps), _g(r.fwd_mult),
    ]  # fmt: skip
    if show_blocks:
        cells.insert(6, _g(r.blocks_mult))
    return cells


def folded_rows(plan: Plan, fold: bool, show_blocks: bool) -> list[tuple[str, list[str]]]:
    """(name, cells) per row; with ``fold``, layers whose cells are identical share one row."""
    if not fold:
        return [(r.name, _cells(r, show_blocks)) for r in plan.rows]
    groups: dict[str, list[PlanRow]] = {}
    for r in plan.rows:
        groups.setdefault(plan.roles.layer_agnostic(r.name), []).append(r)
    rows = []
    for key, members in groups.items():
        cells = [_cells(r, show_blocks) for r in members]
        if len(members) > 1 and all(c == cells[0] for c in cells):
            rows.append((f"{key} (x{len(members)})", cells[0]))
        else:
            rows.extend((r.name, c) for r, c in zip(members, cells, strict=False))
    return rows


def render_plan(plan: Plan, console: Console, fold: bool = True) -> None:
    h = plan.header()
    m = plan.multipliers
    others = ", ".join(w for w in WD_CONVENTIONS if w != plan.wd_convention)
    default = " (default)" if plan.wd_convention == DEFAULT_WD_CONVENTION else ""
    wd_text = {
        "coupled": "coupled: torch-style lr·wd, wd scaled by 1/lr_mult so the per-step decay stays at its base value",
        "independent": "independent: per-step decay wd/width_mult (2512.05620), set through torch's lr·wd",
    }[plan.wd_convention]
    console.print(
        f"[bold]{h['optimizer']}[/] under [bold]{h['parameterization']}[/]: width {h['width']} (base {h['base_width']}), "
        f"depth {h['depth']} (base {h['base_depth']}), depth alpha {h['depth_alpha']:g}"
    )
    console.print(f"weight decay {wd_text}{default}; also available: {others}")
    attn = "the model's own 1/sqrt(d_head)" if m.attn_scale is None else f"{m.attn_scale:.4g}"
    console.print(
        f"forward: embedding x{m.embed:.4g}, output logits x{m.output:.4g}, attention scale {attn}, "
        f"residual branches x{m.residual:.4g}; parameter roles from the {plan.roles.name} map"
    )
    show_blocks = any(r.blocks_mult != 1 for r in plan.rows)
    table = Table(show_lines=False, header_style="bold")
    columns = ["tensor", "role", "shape", "update", "fan_in x", "fan_out x", "depth x", "init", "lr rule",
               "lr mult", "lr", "wd", "eps", "fwd mult"]  # fmt: skip
    if show_blocks:
        columns.insert(7, "blocks x")
    for c in columns:
        table.add_column(c, justify="left" if c in ("tensor", "role", "update", "init", "lr rule", "shape") else "right",
                         overflow="fold")  # fmt: skip
    rows = folded_rows(plan, fold, show_blocks)
    names = table.columns[0]  # never truncated: a tensor name stays whole on one line, the other cells fold
    names.no_wrap, names.min_width = True, max(len(name) for name, _ in rows)
    for name, cells in rows:
        table.add_row(name, *cells)
    console.print(table)
