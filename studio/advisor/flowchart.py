"""The advisor's chart as an SVG string, with the path an Advice took highlighted.

Drawn from studio.advisor.chart.NODE_LIST, so the picture cannot disagree with the logic.
Two trees side by side (or stacked): which method, then which weights train. Each
node shows the answer that leads to it (small, above) and its question or outcome.

Colours live in CSS variables on the root element, one palette per theme ("light",
"dark", or "auto", which follows Gradio's .dark class and prefers-color-scheme). The
<style> block is scoped to .ts-flow and identical for every theme, so several charts
on one page (inline SVG styles are global) never restyle each other.
"""
from __future__ import annotations

from xml.sax.saxutils import escape

from studio.advisor.answers import REGIME_NAMES
from studio.advisor.chart import NODE_LIST, NODES, ROOTS, children, short_name
from studio.advisor.advice import Advice

NODE_W, NODE_H = 172, 40
COL_GAP, ROW_GAP = 30, 8
PAD, HEADER_H, FOOTER_H, BLOCK_GAP = 18, 34, 30, 46
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
LABEL_PX, CAPTION_PX = 13, 11

PALETTES = {
    "light": {
        "bg": "#ffffff", "fg": "#1f2937", "muted": "#6b7280", "edge": "#cbd5e1",
        "q-fill": "#f3f4f6", "q-stroke": "#d1d5db", "m-fill": "#eef2ff", "m-stroke": "#c7d2fe",
        "r-fill": "#ecfdf5", "r-stroke": "#a7f3d0", "hl": "#ea580c", "hl-fill": "#fff7ed", "hl-fg": "#9a3412",
        "badge-fg": "#ffffff",
    },
    "dark": {
        "bg": "#111827", "fg": "#e5e7eb", "muted": "#9ca3af", "edge": "#374151",
        "q-fill": "#1f2937", "q-stroke": "#4b5563", "m-fill": "#1e1b4b", "m-stroke": "#4338ca",
        "r-fill": "#052e2b", "r-stroke": "#0f766e", "hl": "#fb923c", "hl-fill": "#431407", "hl-fg": "#fed7aa",
        "badge-fg": "#111827",
    },
}

STYLE = f"""
.ts-flow {{ font-family: {FONT}; }}
.ts-flow .bg {{ fill: var(--ts-bg); }}
.ts-flow .title {{ fill: var(--ts-fg); font-size: 14px; font-weight: 600; }}
.ts-flow .footer {{ fill: var(--ts-muted); font-size: 12px; }}
.ts-flow .footer tspan.strong {{ fill: var(--ts-fg); font-weight: 600; }}
.ts-flow .edge {{ fill: none; stroke: var(--ts-edge); stroke-width: 1.5; }}
.ts-flow .edge.taken {{ stroke: var(--ts-hl); stroke-width: 2.5; }}
.ts-flow .edge.link {{ stroke-dasharray: 5 4; }}
.ts-flow .node rect {{ stroke-width: 1.2; }}
.ts-flow .node.question rect {{ fill: var(--ts-q-fill); stroke: var(--ts-q-stroke); }}
.ts-flow .node.method rect {{ fill: var(--ts-m-fill); stroke: var(--ts-m-stroke); }}
.ts-flow .node.regime rect {{ fill: var(--ts-r-fill); stroke: var(--ts-r-stroke); }}
.ts-flow .node .label {{ fill: var(--ts-fg); font-size: {LABEL_PX}px; font-weight: 500; }}
.ts-flow .node .caption {{ fill: var(--ts-muted); font-size: {CAPTION_PX}px; }}
.ts-flow.has-path .node:not(.taken) {{ opacity: 0.55; }}
.ts-flow .node.taken rect {{ fill: var(--ts-hl-fill); stroke: var(--ts-hl); stroke-width: 2.5; }}
.ts-flow .node.taken .label {{ fill: var(--ts-hl-fg); font-weight: 700; }}
.ts-flow .node.taken .caption {{ fill: var(--ts-hl-fg); }}
.ts-flow .badge circle {{ fill: var(--ts-hl); }}
.ts-flow .badge text {{ fill: var(--ts-badge-fg); font-size: 10px; font-weight: 700; }}
"""


def _vars(palette: dict) -> str:
    return "; ".join(f"--ts-{k}: {v}" for k, v in palette.items())


def _auto_style() -> str:
    dark = _vars(PALETTES["dark"])
    return (f".ts-flow.auto {{ {_vars(PALETTES['light'])}; }}\n.dark .ts-flow.auto {{ {dark}; }}\n"
            f"@media (prefers-color-scheme: dark) {{ .ts-flow.auto {{ {dark}; }} }}\n")


# -- layout -------------------------------------------------------------------------------


def _tree_layout(root: str) -> tuple[dict[str, tuple[float, float]], int, int]:
    """(column, row) per node: leaves take consecutive rows in chart order, a question sits
    midway between its first and last child. Returns positions, columns, rows."""
    pos: dict[str, tuple[float, float]] = {}
    next_row = [0]

    def place(node_id: str, depth: int) -> float:
        kids = children(node_id)
        if not kids:
            row = next_row[0]
            next_row[0] += 1
        else:
            rows = [place(k.id, depth + 1) for k in kids]
            row = (rows[0] + rows[-1]) / 2
        pos[node_id] = (depth, row)
        return row

    place(root, 0)
    return pos, int(max(c for c, _ in pos.values())) + 1, next_row[0]


def layout(stacked: bool = False) -> tuple[dict[str, tuple[float, float]], float, float, dict]:
    """Pixel top-left of every node, the canvas size, and the blocks' header positions."""
    method_pos, m_cols, m_rows = _tree_layout(ROOTS[0])
    regime_pos, r_cols, r_rows = _tree_layout(ROOTS[1])
    pitch_x, pitch_y = NODE_W + COL_GAP, NODE_H + ROW_GAP
    m_w, m_h = m_cols * pitch_x - COL_GAP, m_rows * pitch_y - ROW_GAP
    r_w, r_h = r_cols * pitch_x - COL_GAP, r_rows * pitch_y - ROW_GAP
    top = PAD + HEADER_H
    if stacked:
        origin = {"method": (PAD, top), "regime": (PAD, top + m_h + BLOCK_GAP + HEADER_H)}
        width, height = 2 * PAD + max(m_w, r_w), origin["regime"][1] + r_h
    else:
        # the regime tree sits level with the middle of the method tree
        r_top = top + max(0.0, (m_h - r_h) / 2)
        origin = {"method": (PAD, top), "regime": (PAD + m_w + BLOCK_GAP, r_top)}
        width, height = 2 * PAD + m_w + BLOCK_GAP + r_w, top + max(m_h, r_top - top + r_h)
    xy = {}
    for block, pos in (("method", method_pos), ("regime", regime_pos)):
        ox, oy = origin[block]
        for node_id, (col, row) in pos.items():
            xy[node_id] = (ox + col * pitch_x, oy + row * pitch_y)
    return xy, width, height + FOOTER_H + PAD, origin


# -- drawing ------------------------------------------------------------------------------


def _fit(text: str, px: int, width: float) -> str:
    """Shorten text to fit `width` pixels (average glyph ~0.56 em); the full text is in the tooltip."""
    room = int(width / (px * 0.58))
    return text if len(text) <= room else text[: max(room - 1, 1)].rstrip() + "…"


def _curve(x1: float, y1: float, x2: float, y2: float) -> str:
    mid = (x1 + x2) / 2
    return f"M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"


def _node(node_id: str, x: float, y: float, caption: str, step: int | None, tip: str) -> str:
    node = NODES[node_id]
    cls = f"node {node.kind}" + (" taken" if step else "")
    inner = NODE_W - 20
    parts = [f'<g class="{cls}" data-node="{node_id}">', f"<title>{escape(tip)}</title>",
             f'<rect x="{x:.1f}" y="{y:.1f}" width="{NODE_W}" height="{NODE_H}" rx="10" ry="10"/>']
    if caption:
        parts.append(f'<text class="caption" x="{x + 10:.1f}" y="{y + 15:.1f}">{escape(_fit(caption, CAPTION_PX, inner))}</text>')
        parts.append(f'<text class="label" x="{x + 10:.1f}" y="{y + 32:.1f}">{escape(_fit(node.label, LABEL_PX, inner))}</text>')
    else:
        parts.append(f'<text class="label" x="{x + 10:.1f}" y="{y + NODE_H / 2 + 4.5:.1f}">'
                     f"{escape(_fit(node.label, LABEL_PX, inner))}</text>")
    if step:
        cx, cy = x + NODE_W - 2, y + 2
        parts.append(f'<g class="badge"><circle cx="{cx:.1f}" cy="{cy:.1f}" r="9"/>'
                     f'<text x="{cx:.1f}" y="{cy + 3.5:.1f}" text-anchor="middle">{step}</text></g>')
    parts.append("</g>")
    return "".join(parts)


def svg(advice: Advice | None = None, theme: str = "light", stacked: bool = False) -> str:
    """The chart as a standalone SVG document; `advice` highlights its path (numbered),
    None draws the bare chart. theme: "light", "dark" or "auto" (follows the page)."""
    if theme not in ("light", "dark", "auto"):
        raise ValueError(f"theme: '{theme}' is not one of light, dark, auto")
    xy, width, height, origin = layout(stacked)
    steps = {s.node_id: i for i, s in enumerate(advice.path, 1)} if advice else {}
    reasons = {s.node_id: s.reason for s in advice.path} if advice else {}
    taken_edges = {(a.node_id, b.node_id) for a, b in zip(advice.path, advice.path[1:])} if advice else set()

    edges, nodes = [], []
    for node in NODE_LIST:
        x, y = xy[node.id]
        if node.parent:
            px, py = xy[node.parent]
            cls = "edge taken" if (node.parent, node.id) in taken_edges else "edge"
            edges.append((cls, _curve(px + NODE_W, py + NODE_H / 2, x, y + NODE_H / 2)))
        caption = node.choice_label
        if node.id == ROOTS[1]:
            caption = f"for {_method_leaf(advice)}" if advice else "for any method"
        tip = reasons.get(node.id) or node.why or node.label
        nodes.append(_node(node.id, x, y, caption, steps.get(node.id), tip))
    if advice and not stacked:  # carry the path from the method leaf over to the regime tree
        leaf = _method_leaf_id(advice)
        lx, ly = xy[leaf]
        rx, ry = xy[ROOTS[1]]
        edges.append(("edge taken link", _curve(lx + NODE_W, ly + NODE_H / 2, rx, ry + NODE_H / 2)))
    edges.sort(key=lambda e: "taken" in e[0])  # highlighted edges on top

    palette = "" if theme == "auto" else "; " + _vars(PALETTES[theme])
    classes = "ts-flow" + (" auto" if theme == "auto" else f" {theme}") + (" has-path" if advice else "")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="{classes}" viewBox="0 0 {width:.0f} {height:.0f}" '
           f'width="100%" style="max-width: {width:.0f}px; height: auto{palette}" role="img" '
           f'aria-label="Method selection flowchart">',
           f"<style>{STYLE}{_auto_style() if theme == 'auto' else ''}</style>",
           f'<rect class="bg" x="0" y="0" width="{width:.0f}" height="{height:.0f}" rx="14" ry="14"/>']
    for block, title in (("method", "1 · Which method"), ("regime", "2 · Which weights train")):
        ox, oy = origin[block]
        out.append(f'<text class="title" x="{ox:.1f}" y="{oy - 14:.1f}">{title}</text>')
    out += [f'<path class="{cls}" d="{d}"/>' for cls, d in edges]
    out += nodes
    out.append(_footer(advice, height))
    out.append("</svg>")
    return "\n".join(out)


def _method_leaf_id(advice: Advice) -> str:
    return next(s.node_id for s in advice.path if NODES[s.node_id].kind == "method")


def _method_leaf(advice: Advice) -> str:
    return NODES[_method_leaf_id(advice)].label


def _footer(advice: Advice | None, height: float) -> str:
    y = height - PAD - 8
    if advice is None:
        text = "Answer the questions to see the path; hover a box for why it leads where it does."
        return f'<text class="footer" x="{PAD}" y="{y:.1f}">{escape(text)}</text>'
    r = advice.runner_up
    best = f"{short_name(advice.method)} · {REGIME_NAMES.get(advice.regime, advice.regime)}"
    other = f"{short_name(r.method)} · {REGIME_NAMES.get(r.regime, r.regime)}"
    return (f'<text class="footer" x="{PAD}" y="{y:.1f}">Recommended: <tspan class="strong">'
            f"{escape(best)}</tspan>   ·   runner-up: {escape(other)}</text>")

