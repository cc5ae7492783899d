"""A colour-blind-safe palette for the ten digit labels: Paul Tol's nine "muted" colours plus a
dark grey (instead of Tol's pale grey, which vanishes on the white background of dead cells)."""

LABEL_COLOURS = [
    "#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE",
    "#882255", "#44AA99", "#999933", "#AA4499", "#555555",
]
DEAD_COLOUR = "#FFFFFF"


def rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    return tuple(int(h[i : i + 2], 16) for i in (0, 2, 4))
