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

import logging
import os
import shutil
import subprocess
import tkinter as tk
import tkinter.font as tkfont
from dataclasses import dataclass
from tkinter import ttk

log = logging.getLogger(__name__)

ENV_THEME = "DIGITLAB_THEME"  # light | dark | auto (default)
MODES = ("light", "dark")
# How long to wait for the desktop's colour-scheme setting before assuming light.
DETECT_TIMEOUT_S = 1.0
# Fallback theme names (Tk's clam, recoloured) when sv-ttk is not installed.
FALLBACK_THEMES = {"light": "digitlab-light", "dark": "digitlab-dark"}
SV_THEMES = {"light": "sun-valley-light", "dark": "sun-valley-dark"}


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
    style.configure("Error.TLabel", font=FONT_BODY, foreground=pal.bad)
    style.configure("Status.TLabel", font=FONT_SMALL, foreground=pal.muted)
    style.configure("Status.TFrame", background=pal.bg)
    style.configure("TProgressbar", background=pal.accent)


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
