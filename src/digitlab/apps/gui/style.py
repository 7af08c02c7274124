"""The look of the desktop app: a ttk theme, the web page's colours, light and dark.

Widgets come from the Sun Valley ttk theme (the ``sv-ttk`` package: rounded buttons, switches,
sliders, light and dark variants); without it, a flat theme built here on Tk's own "clam". What
the app draws itself (the drawing paper, the result card, the probability bars, the curves)
uses :class:`Palette`, the colours of the web page (``apps/web/style.css``): the same accent,
the same green / amber / red result states, the same bars.

The mode follows ``$DIGITLAB_THEME`` (``light``, ``dark`` or ``auto``: the desktop's
preference where it can be read, else light) and can be switched in the window (View → Dark
mode, Ctrl+D). Every widget gets ``<<ThemeChanged>>`` when it switches; the canvases redraw
themselves then with :func:`palette_of`.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import re
import shutil
import subprocess
import tkinter as tk
import tkinter.font as tkfont
from dataclasses import dataclass
from pathlib import Path
from tkinter import ttk

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

ENV_THEME = "DIGITLAB_THEME"  # light | dark | auto (default)
MODES = ("light", "dark")
# How long to wait for the desktop's colour-scheme setting before assuming light.
DETECT_TIMEOUT_S = 1.0
# Fallback theme names (Tk's clam, recoloured) when sv-ttk is not installed.
FALLBACK_THEMES = {"light": "digitlab-light", "dark": "digitlab-dark"}
# Sun Valley's own accent per mode (its Tcl namespace, colour), replaced by the palette's.
SV_ACCENTS = {"light": ("sv_light", "#005fb8"), "dark": ("sv_dark", "#57c8ff")}
ACCENT_HUE_RANGE = 14  # of 256: pixels within ~20 degrees of the stock accent's hue
ACCENT_MIN_SATURATION = 64  # of 255: greys and near-greys stay as they are


@dataclass(frozen=True)
class Palette:
    """The colours of one mode (names as in the web page's style.css)."""

    bg: str  # the window, and the cards (which have a border line, as in Sun Valley)
    border: str
    text: str
    muted: str
    faint: str  # the tracks of the bars, chips, the neutral result card
    accent: str
    accent_2: str
    accent_soft: str
    ok: str
    ok_soft: str
    warn: str
    warn_soft: str
    bad: str
    bad_soft: str
    bar: str
    paper: str
    ink: str
    dots: str  # the faint dotted grid on the paper
    hint: str


LIGHT = Palette(
    bg="#fafafa",
    border="#e3e5ee",
    text="#171a2b",
    muted="#5d6479",
    faint="#eef0f6",
    accent="#4f46e5",
    accent_2="#7c3aed",
    accent_soft="#e8e7ff",
    ok="#0f9d6b",
    ok_soft="#e2f6ee",
    warn="#b45309",
    warn_soft="#fff3dc",
    bad="#c0262d",
    bad_soft="#fde7e8",
    bar="#c7cbe0",
    paper="#ffffff",
    ink="#111318",
    dots="#d9dce8",
    hint="#9aa1b9",
)
DARK = Palette(
    bg="#1c1c1c",
    border="#303030",
    text="#eceefa",
    muted="#a2a8c3",
    faint="#262a3a",
    accent="#8b87ff",
    accent_2="#b48cff",
    accent_soft="#2a2d5c",
    ok="#3ddc97",
    ok_soft="#123329",
    warn="#f7b955",
    warn_soft="#3a2a10",
    bad="#ff7a7f",
    bad_soft="#3d1518",
    bar="#39406a",
    paper="#ffffff",  # the paper stays white, as on the web page: ink on paper
    ink="#111318",
    dots="#d9dce8",
    hint="#9aa1b9",
)
PALETTES = {"light": LIGHT, "dark": DARK}

# Named fonts (created once per Tk interpreter by apply_theme).
FONT_BODY = "DigitlabBody"
FONT_SMALL = "DigitlabSmall"
FONT_STRONG = "DigitlabStrong"
FONT_TITLE = "DigitlabTitle"
FONT_BRAND = "DigitlabBrand"
FONT_HEADING = "DigitlabHeading"  # the small upper-case section titles
FONT_BIG = "DigitlabBig"  # the answer
FONT_CHIP = "DigitlabChip"
FONT_SIZES = {
    FONT_BODY: (10, "normal"),
    FONT_SMALL: (9, "normal"),
    FONT_STRONG: (10, "bold"),
    FONT_TITLE: (13, "bold"),
    FONT_BRAND: (15, "bold"),
    FONT_HEADING: (8, "bold"),
    FONT_BIG: (44, "bold"),
    FONT_CHIP: (13, "bold"),
}


def detect_mode() -> str:
    """The desktop's light/dark preference (GNOME's colour scheme, $GTK_THEME), else light."""
    if ":dark" in os.environ.get("GTK_THEME", "").lower():
        return "dark"
    gsettings = shutil.which("gsettings")
    if gsettings:
        try:
            out = subprocess.run(
                [gsettings, "get", "org.gnome.desktop.interface", "color-scheme"],
                capture_output=True,
                text=True,
                timeout=DETECT_TIMEOUT_S,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        if "dark" in out:
            return "dark"
    return "light"


def initial_mode() -> str:
    """The mode to start in: ``$DIGITLAB_THEME`` (light / dark / auto), auto by default."""
    wanted = os.environ.get(ENV_THEME, "auto").strip().lower()
    if wanted in MODES:
        return wanted
    if wanted not in ("", "auto"):
        log.warning("$%s=%r: not light, dark or auto; using auto", ENV_THEME, wanted)
    return detect_mode()


def _has_sun_valley() -> bool:
    try:
        import sv_ttk  # noqa: F401
    except ImportError:
        return False
    return True


def current_mode(widget: tk.Misc) -> str:
    """ "light" or "dark": the mode of the theme in use."""
    return "dark" if ttk.Style(widget).theme_use().endswith("dark") else "light"


def palette_of(widget: tk.Misc) -> Palette:
    """The palette of the theme in use."""
    return PALETTES[current_mode(widget)]


def apply_theme(root: tk.Tk, mode: str) -> str:
    """Use the ``mode`` ("light" / "dark") theme in every window of ``root``; returns the mode."""
    if mode not in MODES:
        raise ValueError(f"theme mode must be light or dark, got {mode!r}")
    _make_fonts(root)
    style = ttk.Style(root)
    if _has_sun_valley():
        import sv_ttk

        sv_ttk.set_theme(mode, root)
        _keep_ttk_label_colours(root)
        _recolour_sun_valley(root)
    else:
        _use_fallback(style, mode)
    pal = PALETTES[mode]
    _configure_styles(style, pal)
    root.configure(background=pal.bg)
    # Classic Tk widgets (menus, the preview label, dialogs' backgrounds) follow the option
    # database; menus that exist already are recoloured by the app.
    for pattern, value in (
        ("*Menu.background", pal.bg),
        ("*Menu.foreground", pal.text),
        ("*Menu.activeBackground", pal.accent),
        ("*Menu.activeForeground", "#ffffff"),
        ("*Menu.relief", "flat"),
        ("*Toplevel.background", pal.bg),
    ):
        root.option_add(pattern, value)
    return mode


def _keep_ttk_label_colours(root: tk.Tk) -> None:
    """Stop sv-ttk from pinning every label's colours when the theme changes.

    Its ``configure_colors`` (run on ``<<ThemeChanged>>``) calls ``tk_setPalette``, which
    writes the theme's plain foreground and background into each existing ttk label as widget
    options, so styles such as ``Error.TLabel`` no longer show. The app colours its classic Tk
    widgets (menus, canvases, dialogs) itself, so the call is dropped from that procedure.
    """
    try:
        body = str(root.tk.call("info", "body", "configure_colors"))
    except tk.TclError:
        return
    patched = re.sub(r"tk_setPalette(?:[^\n]*\\\n)*[^\n]*\n", "", body)
    if patched != body:
        root.tk.call("proc", "configure_colors", "", patched)


def _recolour_sun_valley(root: tk.Tk) -> None:
    """Give Sun Valley's widgets the web page's accent instead of its own blue.

    The theme draws its widgets with images cut from one sprite sheet per mode; this shifts
    the sheet's accent-coloured pixels (shades included) to the palette's accent and copies
    the result into the theme's images, in place. On any surprise in sv-ttk's files the stock
    blue stays (a cosmetic difference only).
    """
    if getattr(root, "_digitlab_recoloured", False):
        return
    root._digitlab_recoloured = True  # type: ignore[attr-defined]
    import sv_ttk

    folder = Path(sv_ttk.__file__).with_name("theme")
    for mode, (namespace, stock) in SV_ACCENTS.items():
        try:
            sprites = _sprite_boxes(folder / f"sprites_{mode}.tcl")
            sheet = _shift_accent(folder / f"spritesheet_{mode}.png", stock, PALETTES[mode].accent)
            buf = io.BytesIO()
            sheet.save(buf, format="PNG")
            name = f"digitlab_spritesheet_{mode}"
            root.tk.call(
                "image", "create", "photo", name, "-data", base64.b64encode(buf.getvalue())
            )
            try:
                for sprite, x, y, w, h in sprites:
                    image = root.tk.call("set", f"ttk::theme::{namespace}::I({sprite})")
                    root.tk.call(
                        image, "copy", name, "-from", x, y, x + w, y + h, "-compositingrule", "set"
                    )
            finally:
                root.tk.call("image", "delete", name)
        except (OSError, ValueError, tk.TclError) as exc:
            log.debug("sv-ttk %s theme keeps its own accent: %s", mode, exc)


def _sprite_boxes(path: Path) -> list[tuple[str, int, int, int, int]]:
    """``(name, x, y, width, height)`` of each sprite listed in an sv-ttk sprites file."""
    boxes = []
    for line in path.read_text().splitlines():
        parts = line.replace("\\", " ").split()
        if len(parts) == 5 and all(p.isdigit() for p in parts[1:]):
            boxes.append((parts[0], *(int(p) for p in parts[1:])))
    if not boxes:
        raise ValueError(f"no sprites listed in {path}")
    return boxes  # type: ignore[return-value]


def _shift_accent(path: Path, stock: str, accent: str) -> Image.Image:
    """The sprite sheet at ``path`` with the pixels of hue ``stock`` moved to ``accent``."""
    sheet = Image.open(path).convert("RGBA")
    hsv = np.asarray(sheet.convert("RGB").convert("HSV")).astype(np.float32)
    src = np.asarray(Image.new("RGB", (1, 1), stock).convert("HSV"), np.float32)[0, 0]
    dst = np.asarray(Image.new("RGB", (1, 1), accent).convert("HSV"), np.float32)[0, 0]
    hue_gap = np.abs(hsv[..., 0] - src[0])
    hue_gap = np.minimum(hue_gap, 256 - hue_gap)
    mask = (hue_gap < ACCENT_HUE_RANGE) & (hsv[..., 1] > ACCENT_MIN_SATURATION)
    hsv[..., 0][mask] = dst[0]
    hsv[..., 1][mask] *= dst[1] / max(src[1], 1.0)
    hsv[..., 2][mask] *= dst[2] / max(src[2], 1.0)
    shifted = Image.fromarray(np.clip(hsv, 0, 255).astype(np.uint8), "HSV").convert("RGBA")
    shifted.putalpha(sheet.getchannel("A"))
    return shifted


def _make_fonts(root: tk.Misc) -> None:
    base = tkfont.nametofont("TkDefaultFont", root).actual("family")
    existing = set(tkfont.names(root))
    for name, (size, weight) in FONT_SIZES.items():
        if name not in existing:  # a Tcl named font lives as long as the interpreter
            root.tk.call("font", "create", name, "-family", base, "-size", size, "-weight", weight)


def _configure_styles(style: ttk.Style, pal: Palette) -> None:
    """The app's own styles, on top of whichever theme is in use."""
    style.configure("TFrame", background=pal.bg)
    style.configure("TLabel", background=pal.bg, foreground=pal.text)
    style.configure("Brand.TLabel", font=FONT_BRAND, foreground=pal.text)
    style.configure("Title.TLabel", font=FONT_TITLE, foreground=pal.text)
    style.configure("Heading.TLabel", font=FONT_HEADING, foreground=pal.muted)
    style.configure("Muted.TLabel", font=FONT_BODY, foreground=pal.muted)
    style.configure("Small.TLabel", font=FONT_SMALL, foreground=pal.muted)
    style.configure("Value.TLabel", font=FONT_STRONG, foreground=pal.muted)
    style.configure("Error.TFrame", background=pal.bad_soft)
    style.configure("Error.TLabel", font=FONT_BODY, foreground=pal.bad, background=pal.bad_soft)
    style.configure("Status.TLabel", font=FONT_SMALL, foreground=pal.muted)
    style.configure("Status.TFrame", background=pal.bg)


def _use_fallback(style: ttk.Style, mode: str) -> None:
    """A flat clam-based theme in the palette's colours (when sv-ttk is missing)."""
    name = FALLBACK_THEMES[mode]
    pal = PALETTES[mode]
    if name not in style.theme_names():
        style.theme_create(name, parent="clam")
    style.theme_use(name)
    flat = {"bordercolor": pal.border, "lightcolor": pal.bg, "darkcolor": pal.bg}
    style.configure(
        ".",
        background=pal.bg,
        foreground=pal.text,
        fieldbackground=pal.paper if mode == "light" else pal.faint,
        troughcolor=pal.faint,
        selectbackground=pal.accent,
        selectforeground="#ffffff",
        insertcolor=pal.text,
        **flat,
    )
    style.configure("TButton", padding=(12, 5), background=pal.bg, **flat)
    style.map("TButton", background=[("pressed", pal.faint), ("active", pal.faint)])
    style.configure("Accent.TButton", background=pal.accent, foreground="#ffffff")
    style.map("Accent.TButton", background=[("active", pal.accent_2)])
    style.configure("Card.TFrame", background=pal.bg, borderwidth=1, relief="solid", **flat)
    style.configure("TProgressbar", background=pal.accent)
    for derived, parent in (
        ("Switch.TCheckbutton", "TCheckbutton"),
        ("Toggle.TButton", "TButton"),
    ):
        style.layout(derived, style.layout(parent))
    style.map("Toggle.TButton", background=[("selected", pal.accent_soft)])


def rounded_rect(
    canvas: tk.Canvas, x0: float, y0: float, x1: float, y1: float, radius: float, **options
) -> int:
    """A rectangle with rounded corners on ``canvas`` (a smoothed polygon); returns its id."""
    r = max(0.0, min(radius, (x1 - x0) / 2, (y1 - y0) / 2))
    points = [
        (x0 + r, y0), (x1 - r, y0), (x1, y0), (x1, y0 + r),
        (x1, y1 - r), (x1, y1), (x1 - r, y1), (x0 + r, y1),
        (x0, y1), (x0, y1 - r), (x0, y0 + r), (x0, y0),
    ]  # fmt: skip
    # Doubling the straight segments' end points keeps the edges straight under smoothing.
    flat = [c for i, p in enumerate(points) for c in (p * (2 if i % 3 != 2 else 1))]
    return canvas.create_polygon(flat, smooth=True, **options)
