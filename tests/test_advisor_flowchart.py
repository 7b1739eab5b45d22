"""The advisor's chart as SVG: valid XML, one highlighted box per path node (and only
those), highlighted edges along the path, readable in light and dark, nothing overlaps
and no label is cut short."""
from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

import pytest

from studio import advisor
from studio.advisor import flowchart
from tests.conftest import LEAF_INPUTS

NS = {"svg": "http://www.w3.org/2000/svg"}


def parse(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def node_groups(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter("{http://www.w3.org/2000/svg}g") if "node" in g.get("class", "").split()]


@pytest.mark.parametrize("stacked", [False, True])
@pytest.mark.parametrize("leaf", sorted(LEAF_INPUTS))
def test_one_highlighted_box_per_path_node(leaf, stacked):
    advice = advisor.advise(LEAF_INPUTS[leaf])
    root = parse(flowchart.svg(advice, "light", stacked=stacked))
    groups = node_groups(root)
    assert {g.get("data-node") for g in groups} == set(advisor.NODES)  # every box drawn, once
    assert len(groups) == len(advisor.NODE_LIST)
    taken = [g.get("data-node") for g in groups if "taken" in g.get("class").split()]
    assert sorted(taken) == sorted(advice.node_ids())
    badges = sorted(int(t.text) for g in groups for t in g.iter("{http://www.w3.org/2000/svg}text")
                    if t.text and t.text.isdigit())
    assert badges == list(range(1, len(advice.path) + 1))
    edges = [p for p in root.iter("{http://www.w3.org/2000/svg}path") if "taken" in p.get("class", "")]
    # the path's edges inside each tree, plus the link between the trees in the wide layout
    assert len(edges) == len(advice.path) - 2 + (0 if stacked else 1)
    hovers = {g.get("data-node"): g.find("svg:title", NS).text for g in groups}
    for step in advice.path:
        assert hovers[step.node_id] == step.reason


def test_bare_chart_has_no_highlight():
    text = flowchart.svg(None, "dark")
    root = parse(text)
    assert not [g for g in node_groups(root) if "taken" in g.get("class")]
    assert "has-path" not in root.get("class")


def test_light_and_dark_differ_and_carry_their_palettes():
    advice = advisor.advise(LEAF_INPUTS["dpo"])
    light, dark = flowchart.svg(advice, "light"), flowchart.svg(advice, "dark")
    assert light != dark
    assert flowchart.PALETTES["light"]["bg"] in light and flowchart.PALETTES["dark"]["bg"] not in light
    assert flowchart.PALETTES["dark"]["bg"] in dark and flowchart.PALETTES["light"]["bg"] not in dark
    # the text colour contrasts with the background in both
    for name in ("light", "dark"):
        pal = flowchart.PALETTES[name]
        assert contrast(pal["fg"], pal["bg"]) > 7 and contrast(pal["hl-fg"], pal["hl-fill"]) > 4.5
    auto = flowchart.svg(advice, "auto")
    assert "prefers-color-scheme: dark" in auto and ".dark .ts-flow.auto" in auto
    parse(auto)
    with pytest.raises(ValueError, match="theme"):
        flowchart.svg(advice, "sepia")


def contrast(a: str, b: str) -> float:
    def lum(hex_colour: str) -> float:
        rgb = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("stacked", [False, True])
def test_boxes_do_not_overlap_and_stay_on_the_canvas(stacked):
    xy, width, height, _ = flowchart.layout(stacked)
    w, h = flowchart.NODE_W, flowchart.NODE_H
    for (a, (ax, ay)), (b, (bx, by)) in itertools.combinations(xy.items(), 2):
        assert ax + w <= bx or bx + w <= ax or ay + h <= by or by + h <= ay, (a, b)
    for x, y in xy.values():
        assert 0 <= x and x + w <= width and 0 <= y and y + h <= height


def test_no_label_is_cut_short():
    root = parse(flowchart.svg(advisor.advise(LEAF_INPUTS["ppo_pref"]), "light"))
    texts = [t.text for g in node_groups(root) for t in g.iter("{http://www.w3.org/2000/svg}text")]
    assert texts and not [t for t in texts if t and "…" in t]
