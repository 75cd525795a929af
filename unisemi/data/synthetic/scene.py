"""Per-image scene: a list of primitives drawn from a seeded generator (pure function of the seed).

Coordinates are relative: y in [0, 1] (fraction of H), x in [0, A] with A = W/H of the domain's
default size, so one scene renders the same at any scale. A pinhole camera (focal length 1 in
these units) puts a point at lateral X, height h, depth Z (metres) at x = vx + X/Z,
y = hor + (ch - h)/Z. Things are made of box faces (front, side, top) and flat parts at scale
s = 1/Z, so perspective, occlusion (painter's order, far to near) and textures in metres follow.

A primitive is one row of `NF` floats: rows [y0, y1]; centre and half-width interpolated from
top to bottom (cx0, hw0) -> (cx1, hw1) with a superellipse profile of exponent `ex` (0 = box);
optional clip lines y >= yt + st (x - xr) and y <= yb + sb (x - xr) (faces seen in perspective);
class id; two colours; a texture-coordinate mode (0 planar in metres, 1 vertical plane X = mp,
2 horizontal plane at height mp) and texture parameters. See render.py.
"""
from __future__ import annotations

import colorsys
import hashlib

import numpy as np

from unisemi.data.synthetic import domains as D

COLS = ("y0 y1 cx0 cx1 hw0 hw1 ex xr yt st yb sb cls r g b r2 g2 b2 mode mp mq "
        "noise stripe freq angle phase grid gx gy gfill shade round").split()
NF = len(COLS)
C = {name: i for i, name in enumerate(COLS)}
STYLE = ("vx hor ch gain cr cg cb grad_y grad_x shadow sat blur noise seed haze hr hg hb").split()
MIN_HW = 0.006        # thinnest part, height units (about 0.4 px at H = 64): poles stay visible


def image_seed(domain: str, split: str, index: int, seed: int) -> int:
    """Stable 63-bit seed of one image (blake2b; Python's hash() is salted per process)."""
    key = f"{domain}|{split}|{int(index)}|{int(seed)}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def T(noise=0.12, stripe=0.0, freq=1.0, angle=0.0, grid=0.0, gx=1.0, gy=1.0, gfill=0.5,
      shade=0.0, rnd=0.0):
    """Texture parameters: value-noise amplitude, sinusoid stripes (cycles/m, angle), a grid of
    centred cells (windows, tiles, drawers) filled with the second colour, vertical shading and
    cylindrical shading."""
    return (noise, stripe, freq, angle, grid, gx, gy, gfill, shade, rnd)


PLAIN = T()


class Draws:
    """Uniforms from a numpy Generator, pre-drawn in blocks: per-call numpy overhead would
    dominate (a street scene takes ~800 draws)."""

    def __init__(self, seed: int):
        self.g = np.random.Generator(np.random.PCG64(seed))
        self._next = iter(self.g.random(1024).tolist()).__next__

    def u(self, lo=0.0, hi=1.0):
        try:
            v = self._next()
        except StopIteration:
            self._next = iter(self.g.random(1024).tolist()).__next__
            v = self._next()
        return lo + (hi - lo) * v

    def chance(self, p):
        return self.u() < p

    def int(self, lo, hi):
        return min(hi, int(self.u(lo, hi + 1)))

    def pick(self, seq):
        return seq[min(len(seq) - 1, int(self.u() * len(seq)))]


def scaled(rgb, k):
    return (min(1.0, rgb[0] * k), min(1.0, rgb[1] * k), min(1.0, rgb[2] * k))


class Scene:
    """Collects primitives for one image; owns the camera and the draws."""

    def __init__(self, spec: D.DomainSpec, seed: int):
        self.d = d = Draws(seed)
        self.spec, self.st = spec, spec.style
        self.A = spec.size[1] / spec.size[0]
        self.ids = {n: i for i, n in enumerate(spec.classes)}
        self.out, self.items, self._boxes = [], [], {}
        # Which entries appear, and how many instances: drawn first, in table order.
        self.on: dict[str, list] = {}
        for e in spec.entries:
            n = max(1, round(d.int(*e.count) * self.st.density)) if d.chance(e.presence) else 0
            self.on.setdefault(e.concept, []).append((e, n))
        self.k_side, self.k_top = d.u(0.5, 0.95), d.u(0.95, 1.3)   # sun direction: face shading
        self.vx, self.hor, self.ch = self.A / 2, 0.5, 1.5

    # -- entries ---------------------------------------------------------------------------
    def ents(self, concept):
        """Present entries of a concept, with their instance counts."""
        return [(e, n) for e, n in self.on.get(concept, ()) if n > 0]

    def n(self, concept):
        return sum(n for _, n in self.ents(concept))

    def cid(self, concept, fallback=None):
        """Class id of a concept's first entry (present or not); fallback concept otherwise."""
        for e, _ in self.on.get(concept, ()):
            return D.IGNORE_INDEX if e.label is None else self.ids[e.label]
        return self.cid(fallback) if fallback else D.IGNORE_INDEX

    def entry(self, concept, fallback=None):
        """First entry of a concept (present or not), else of the fallback concept."""
        for e, _ in self.on.get(concept, ()):
            return e
        return self.entry(fallback) if fallback else None

    def label_id(self, e):
        return D.IGNORE_INDEX if e.label is None else self.ids[e.label]

    def colour(self, box, k=1.0):
        """Per-instance colour from an HSV box, widened by colour_spread, in the domain palette."""
        if box not in self._boxes:
            w = (self.st.colour_spread - 1) / 2
            h0, h1, s0, s1, v0, v1 = box
            self._boxes[box] = (h0 - (h1 - h0) * w, h1 + (h1 - h0) * w,
                                max(0.0, s0 - (s1 - s0) * w), min(1.0, s1 + (s1 - s0) * w),
                                max(0.0, v0 - (v1 - v0) * w), min(1.0, v1 + (v1 - v0) * w))
        h0, h1, s0, s1, v0, v1 = self._boxes[box]
        u, st = self.d.u, self.st
        return colorsys.hsv_to_rgb((u(h0, h1) + st.hue_shift) % 1.0,
                                   min(1.0, u(s0, s1) * st.sat_scale),
                                   min(1.0, u(v0, v1) * st.val_scale * k))

    # -- primitives ------------------------------------------------------------------------
    def prim(self, cls, y0, y1, cx0, hw0, cx1=None, hw1=None, ex=0.0, rgb=(0.5,) * 3, rgb2=None,
             tex=PLAIN, mode=0, mp=1.0, mq=0.0, lines=None):
        cx1 = cx0 if cx1 is None else cx1
        hw1 = hw0 if hw1 is None else hw1
        m = max(hw0, hw1)
        if y1 - y0 < 0.004 or y1 < 0 or y0 > 1 or m <= 0:
            return
        if m < MIN_HW:
            hw0, hw1 = hw0 * MIN_HW / m, hw1 * MIN_HW / m
        if min(cx0 - hw0, cx1 - hw1) > self.A or max(cx0 + hw0, cx1 + hw1) < 0:
            return
        xr, yt, st, yb, sb = lines or (0.0, y0, 0.0, y1, 0.0)
        rgb2 = rgb2 or scaled(rgb, 0.6)
        a = self.st.texture_amp * self.d.u(0.6, 1.4)
        t = tex
        self.out.append((y0, y1, cx0, cx1, hw0, hw1, ex, xr, yt, st, yb, sb, cls, *rgb, *rgb2,
                         mode, mp, mq, t[0] * a, t[1] * a, t[2], t[3], self.d.u(0, 6.283),
                         min(1.0, t[4] * a), t[5], t[6], t[7], t[8], t[9]))

    def part(self, cls, xc, yg, s, lo, hi, wlo, whi=None, dlo=0.0, dhi=0.0, rgb=(0.5,) * 3,
             rgb2=None, tex=PLAIN, ex=0.0):
        """A flat part in an object's own metres: heights lo..hi above the ground row yg, half
        widths wlo (bottom) and whi (top), centre offsets dlo, dhi; s = height units per metre."""
        whi = wlo if whi is None else whi
        self.prim(cls, yg - hi * s, yg - lo * s, xc + dhi * s, whi * s, xc + dlo * s, wlo * s, ex,
                  rgb, rgb2, tex, 0, s)

    def front(self, cls, xl, xr, h0, h1, Z, rgb, rgb2=None, tex=PLAIN, ex=0.0, taper=1.0):
        """Face of a box facing the camera at depth Z."""
        s = 1.0 / Z
        cx, hw = self.vx + (xl + xr) / 2 * s, (xr - xl) / 2 * s
        self.prim(cls, self.hor + (self.ch - h1) * s, self.hor + (self.ch - h0) * s, cx, hw * taper,
                  cx, hw, ex, rgb, rgb2, tex, 0, s)

    def side(self, cls, Xs, Z0, Z1, h0, h1, rgb, rgb2=None, tex=PLAIN):
        """Vertical face in the plane X = Xs from depth Z0 to Z1 (a facade, a car's flank)."""
        if abs(Xs) < 0.05 or Z1 <= Z0:
            return
        vx, hor, ch = self.vx, self.hor, self.ch
        xa, xb = vx + Xs / Z0, vx + Xs / Z1
        y0 = min(hor + (ch - h1) / Z0, hor + (ch - h1) / Z1)
        y1 = max(hor + (ch - h0) / Z0, hor + (ch - h0) / Z1)
        lo, hi = min(xa, xb), max(xa, xb)
        self.prim(cls, y0, y1, (lo + hi) / 2, (hi - lo) / 2, ex=0.0, rgb=rgb, rgb2=rgb2, tex=tex,
                  mode=1, mp=Xs, mq=Z0, lines=(vx, hor, (ch - h1) / Xs, hor, (ch - h0) / Xs))

    def top(self, cls, xl, xr, Z0, Z1, h, rgb, rgb2=None, tex=PLAIN, ex=0.0):
        """Horizontal face at height h from depth Z0 to Z1 (ground, table tops, roofs)."""
        if h > self.ch - 0.02 or Z1 <= Z0:
            return
        k, hor, vx = 1.0 / (self.ch - h), self.hor, self.vx
        ya, yb = hor + (self.ch - h) / Z1, hor + (self.ch - h) / Z0
        c, w = (xl + xr) / 2 * k, (xr - xl) / 2 * k
        self.prim(cls, ya, yb, vx + c * (ya - hor), w * (ya - hor), vx + c * (yb - hor),
                  w * (yb - hor), ex, rgb, rgb2, tex, 2, h)

    def box(self, cls, X, Z, w, dep, h0, h1, rgb, rgb2=None, tex=PLAIN, ex=0.0, taper=1.0,
            top_rgb=None):
        """The visible faces of an axis-aligned box, far faces first."""
        xl, xr = X - w / 2, X + w / 2
        self.top(cls, xl, xr, Z, Z + dep, h1, top_rgb or scaled(rgb, self.k_top), None, tex)
        if xr < -0.05:
            self.side(cls, xr, Z, Z + dep, h0, h1, scaled(rgb, self.k_side), rgb2, tex)
        elif xl > 0.05:
            self.side(cls, xl, Z, Z + dep, h0, h1, scaled(rgb, self.k_side), rgb2, tex)
        self.front(cls, xl, xr, h0, h1, Z, rgb, rgb2, tex, ex, taper)

    # -- painter's order of things ---------------------------------------------------------
    def thing(self, Z, fn, *args):
        """Build a thing now (fixed draw order) but paint it by depth, far to near."""
        n = len(self.out)
        fn(self, *args)
        self.items.append((-Z, len(self.items), self.out[n:]))
        del self.out[n:]

    def flush(self):
        for _, _, prims in sorted(self.items, key=lambda t: (t[0], t[1])):
            self.out.extend(prims)
        self.items = []

    def at(self, X, Z):
        """(xc, yg, s) of a ground point: where flat 2-D things stand."""
        return self.vx + X / Z, self.hor + self.ch / Z, 1.0 / Z


def ground_tex(d: Draws):
    """Shared by road, pavement and floor: tracks/planks, slabs/tiles, or plain grain."""
    k = d.u()
    if k < 0.45:
        return T(d.u(0.08, 0.3), d.u(0.05, 0.3), d.u(0.2, 1.5), d.pick((0.0, 1.571)))
    if k < 0.75:
        return T(d.u(0.08, 0.25), grid=d.u(0.1, 0.35), gx=d.u(0.3, 1.2), gy=d.u(0.3, 1.2),
                 gfill=d.u(0.85, 0.95))
    return T(d.u(0.1, 0.35))


def style_vector(sc: Scene):
    """Per-image photometric draws (applied in render.py) plus the camera for textures."""
    d, st = sc.d, sc.st
    c = st.cast
    return (sc.vx, sc.hor, sc.ch, d.u(*st.light), d.u(1 - c, 1 + c), d.u(1 - c, 1 + c),
            d.u(1 - c, 1 + c), d.u(-st.gradient, st.gradient), d.u(-st.gradient, st.gradient),
            d.u(0, st.shadow), d.u(*st.saturation), d.u(*st.blur), d.u(*st.noise),
            float(d.int(0, 2 ** 31 - 1)), st.haze * d.u() ** 2, *sc.colour(HAZE))


# -- concept builders: one function per concept, shared by every domain that maps a class to it --
GLASS = (0.5, 0.7, 0.0, 0.35, 0.04, 0.45)
HAZE = (0.5, 0.65, 0.0, 0.2, 0.6, 0.95)
TYRE = (0.0, 1.0, 0.0, 0.15, 0.02, 0.14)
SKIN = (0.02, 0.10, 0.2, 0.65, 0.18, 0.92)
HAIR = (0.02, 0.12, 0.1, 0.7, 0.03, 0.6)
BARK = (0.04, 0.12, 0.2, 0.6, 0.1, 0.4)
LAMPS = ((0.95, 0.1, 0.05), (1.0, 0.65, 0.0), (0.1, 0.95, 0.3))
BODY = T(0.08, rnd=0.35, shade=-0.2)          # painted metal: cylindrical highlight


def tree(sc, cls, X, Z, col):
    d = sc.d
    ht, r, tw = d.u(1.5, 4.0), d.u(1.2, 3.5), d.u(0.1, 0.25)
    sc.front(cls, X - tw, X + tw, 0, ht + r * 0.5, Z, sc.colour(BARK), tex=T(0.2, 0.3, 4.0, 1.571))
    dark = scaled(col, d.u(0.4, 0.7))
    if d.chance(0.25):                               # conifer: a cone
        sc.front(cls, X - r, X + r, ht * 0.5, ht + 3 * r, Z, col, dark, T(0.5, rnd=0.3), taper=0.0)
        return
    for _ in range(d.int(2, 4)):                     # broadleaf: lumpy crown of blobs
        cx, cy = X + d.u(-0.6, 0.6) * r, ht + r * d.u(0.5, 1.2)
        rx, ry = r * d.u(0.6, 1.0), r * d.u(0.6, 1.0)
        sc.front(cls, cx - rx, cx + rx, cy - ry, cy + ry, Z, col, dark, T(0.55, rnd=0.4),
                 ex=d.u(1.6, 2.5))


def pole(sc, cls, X, Z, col, sign=None, light=None):
    """A pole, optionally carrying a traffic light (top) and a sign: context, not chance."""
    d = sc.d
    hp, w = d.u(3.0, 8.0), d.u(0.06, 0.15)
    arm = light is not None and d.chance(0.5)        # mast arm: the light hangs over the road
    hp = max(hp, 5.0) if arm else hp
    sc.front(cls, X - w, X + w, 0, hp, Z, col, tex=T(0.1, rnd=0.5))
    hc = hp
    if light is not None:
        lw = d.u(0.18, 0.3)
        lh = lw * d.u(2.6, 3.2)
        xl = X - (1 if X > 0 else -1) * d.u(2.0, 5.0) if arm else X
        if arm:
            sc.front(cls, min(X, xl) - 0.05, max(X, xl) + 0.05, hp - 0.15, hp, Z, col)
        sc.front(light[0], xl - lw, xl + lw, hp - lh, hp, Z, light[1], tex=T(0.1, rnd=0.3))
        k = d.int(0, 2)
        yc, rl = hp - lh * (2 * k + 1) / 6, lw * 0.7
        sc.front(light[0], xl - rl, xl + rl, yc - rl, yc + rl, Z, LAMPS[k], ex=2.0)
        hc = hp - 0.5 if arm else hp - lh - 0.2
    if sign is not None:
        sz = d.u(0.35, 0.6)
        hc = max(2.0, hc - d.u(0.0, 0.8) - sz)
        rim = sc.colour(D.WHITE)
        tex = T(0.1, grid=0.8, gx=2 * sz, gy=2 * sz, gfill=d.u(0.55, 0.8))
        shape = d.int(0, 3)
        if shape == 2:                               # rectangular panel
            sc.front(sign[0], X - 1.4 * sz, X + 1.4 * sz, hc - 0.8 * sz, hc + 0.8 * sz, Z, sign[1],
                     rim, tex)
        else:                                        # disc, triangle or diamond
            sc.front(sign[0], X - sz, X + sz, hc - sz, hc + sz, Z, sign[1], rim, tex,
                     ex=(2.0, 0.0, 0.0, 1.0)[shape], taper=0.0 if shape == 1 else 1.0)


def person(sc, cls, xc, yg, s, box):
    d = sc.d
    hp = d.u(1.0, 1.3) if d.chance(0.12) else d.u(1.5, 1.95)
    sh = hp * d.u(0.11, 0.15)
    top, bot = sc.colour(box), sc.colour(box)
    cloth = T(0.2, d.u(0, 0.4), d.u(3, 12), d.pick((0.0, 1.571)))
    if d.chance(0.25):                               # coat or skirt
        sc.part(cls, xc, yg, s, 0, 0.2 * hp, 0.06 * hp, rgb=scaled(bot, 0.5))
        sc.part(cls, xc, yg, s, 0.12 * hp, 0.62 * hp, sh * d.u(0.9, 1.3), sh * 0.8, rgb=bot,
                tex=cloth)
    else:                                            # two legs, mid-stride
        stride = d.u(-0.12, 0.12) * hp
        for k in (-1, 1):
            sc.part(cls, xc, yg, s, 0, 0.5 * hp, 0.05 * hp, 0.065 * hp, k * (sh * 0.45 + stride),
                    k * sh * 0.45, rgb=bot, tex=cloth)
    sc.part(cls, xc, yg, s, 0.47 * hp, 0.83 * hp, sh * 0.85, sh, rgb=top, tex=cloth)
    sc.part(cls, xc, yg, s, 0.82 * hp, 0.99 * hp, 0.075 * hp, rgb=sc.colour(SKIN), ex=2.0)
    sc.part(cls, xc, yg, s, 0.9 * hp, 1.0 * hp, 0.079 * hp, rgb=sc.colour(HAIR), ex=2.0)


def two_wheeler(sc, cls, variant, xc, yg, s, paint, rider=None, side_view=True):
    """Bicycle or motorcycle (same concept, different attributes), with an optional rider."""
    d = sc.d
    moto = variant == "motorcycle"
    r = d.u(0.29, 0.34)
    wb = d.u(1.25, 1.5) if moto else d.u(0.95, 1.1)
    seat = d.u(0.72, 0.85) if moto else d.u(0.85, 1.0)
    f = 1.0 if d.chance(0.5) else -1.0               # which way it faces
    tyre = sc.colour(TYRE)
    if side_view:
        hub = T(0.1, grid=1.0, gx=2 * r, gy=2 * r, gfill=0.35 if moto else 0.6)
        for dx in (-wb / 2, wb / 2):
            sc.part(cls, xc, yg, s, 0, 2 * r, r, dlo=dx, dhi=dx, rgb=tyre, rgb2=sc.colour(D.METAL),
                    tex=hub, ex=2.0)
        if moto:
            sc.part(cls, xc, yg, s, 0.2, r * 1.4, wb * 0.16, rgb=sc.colour(D.METAL))
            sc.part(cls, xc, yg, s, r * 0.9, seat + 0.15, wb * 0.34, wb * 0.28, rgb=paint, ex=2.5,
                    tex=BODY)
        else:
            sc.part(cls, xc, yg, s, r, seat - 0.05, wb * 0.28, wb * 0.32, -0.05 * f * wb,
                    0.08 * f * wb, rgb=paint, rgb2=tyre, tex=T(0.05, grid=0.9, gx=wb * 0.6, gy=0.7,
                                                              gfill=0.5))
        sc.part(cls, xc, yg, s, r, seat + 0.25, 0.03, None, f * wb * 0.45, f * wb * 0.38,
                rgb=scaled(paint, 0.6))
    else:                                            # seen from behind, riding along the street
        sc.part(cls, xc, yg, s, 0, 2 * r, 0.05, rgb=tyre)
        sc.part(cls, xc, yg, s, r * 0.8, seat + 0.05, 0.22 if moto else 0.1, rgb=paint,
                ex=3.0 if moto else 0.0, tex=BODY)
        sc.part(cls, xc, yg, s, seat + 0.2, seat + 0.27, 0.3, rgb=scaled(paint, 0.5))
        f = 0.0
    if rider is None:
        return
    rcls, rbox = rider
    top, bot = sc.colour(rbox), sc.colour(rbox)
    lean = 0.1 * f
    sc.part(rcls, xc, yg, s, r * 0.6, seat + 0.05, 0.07 if f else 0.15, 0.09 if f else 0.16,
            0.25 * f, -0.05 * f, rgb=bot)
    sc.part(rcls, xc, yg, s, seat, seat + 0.62, 0.15 if f else 0.18, 0.17 if f else 0.21,
            -lean, lean, rgb=top, tex=T(0.2))
    if f:
        sc.part(rcls, xc, yg, s, seat + 0.3, seat + 0.55, 0.045, None, 0.38 * f * wb, 0.1 * f,
                rgb=top)
    head = sc.colour(D.PAINT) if moto else sc.colour(SKIN)
    sc.part(rcls, xc, yg, s, seat + 0.6, seat + 0.86, 0.11, dlo=1.2 * lean, dhi=1.2 * lean,
            rgb=head, ex=2.0)


# w, L, lower-body top, roof, cabin span from the near end, wheel radius
VEH = {"car": ((1.65, 1.95), (3.8, 4.9), (0.75, 1.0), (1.35, 1.65), (0.22, 0.72), 0.32),
       "van": ((1.8, 2.1), (4.5, 6.0), (0.95, 1.2), (1.9, 2.5), (0.05, 0.9), 0.35),
       "autorickshaw": ((1.3, 1.45), (2.5, 2.9), (0.6, 0.8), (1.65, 1.85), (0.0, 0.85), 0.22),
       "truck": ((2.3, 2.55), (6.0, 11.0), (1.1, 1.4), (2.8, 3.8), (0.0, 0.75), 0.5),
       "bus": ((2.45, 2.55), (10.0, 13.0), (1.0, 1.25), (2.9, 3.3), (0.0, 1.0), 0.5),
       "train": ((2.4, 2.65), (25.0, 45.0), (1.1, 1.3), (3.3, 3.8), (0.0, 1.0), 0.45)}


def vehicle_dims(d, v):
    w, L, hb, hr, span, r = VEH[v]
    return d.u(*w), d.u(*L), d.u(*hb), d.u(*hr), span, r


def vehicle(sc, cls, v, X, Z, paint, facing, dims):
    """Car, van, truck, bus, train, autorickshaw: one concept, boxes with attribute ranges.
    facing +1: rear face at depth Z (driving away); -1: front face (oncoming)."""
    d = sc.d
    w, L, hb, hr, (c0, c1), r = dims
    if facing < 0:
        c0, c1 = 1 - c1, 1 - c0
    xl, xr = X - w / 2, X + w / 2
    Xs = xr if xr < -0.1 else (xl if xl > 0.1 else None)
    glass, dark = sc.colour(GLASS), sc.colour(TYRE)
    wind = lambda gx, gy, g: T(0.08, grid=1.0, gx=gx, gy=gy, gfill=g)  # noqa: E731

    def block(z0, z1, h0, h1, rgb, rgb2, tf, ts, taper=1.0, ex=0.0):
        za, zb = Z + z0, Z + z1
        sc.top(cls, xl, xr, za, zb, h1, scaled(rgb, sc.k_top), None, tf)
        if Xs is not None:
            sc.side(cls, Xs, za, zb, h0, h1, scaled(rgb, sc.k_side), rgb2, ts)
        sc.front(cls, xl, xr, h0, h1, za, rgb, rgb2, tf, ex, taper)

    blocks = []
    if v == "truck":
        cab, hc = 2.3, d.u(2.5, 3.0)
        cargo = sc.colour(D.ANY)
        zc = L - cab if facing > 0 else 0.0
        blocks.append((zc, zc + cab, 0.5, hc, paint, glass, wind(w, hc - 0.5, 0.6),
                       wind(cab, hc - 0.5, 0.5)))
        zg = 0.0 if facing > 0 else cab + 0.2
        blocks.append((zg, zg + L - cab - 0.2, r * 1.5, hr, cargo, scaled(cargo, 0.7),
                       T(0.1, 0.3, d.u(0.5, 2.0)), T(0.1, 0.3, d.u(0.5, 2.0))))
    else:
        lc = (c1 - c0) * L
        nw = 2 if v in ("car", "van") else max(2, round(lc / d.u(1.2, 2.0)))
        tside = wind(lc / nw, hr - hb, 0.8 if v != "autorickshaw" else 0.7)
        blocks.append((c0 * L, c1 * L, hb, hr, paint if v != "autorickshaw" else
                       sc.colour(D.DARK if d.chance(0.5) else D.PAINT), glass,
                       wind(w, hr - hb, 0.8), tside, 0.75 if v == "car" else 0.92,
                       3.0 if v == "autorickshaw" else 0.0))
        if v == "train":                                             # two-tone livery band
            band = T(0.08, 1.0, 1.0 / (hb - r), 1.571, rnd=0.2)
            blocks.append((0.0, L, r * 0.9, hb, paint, sc.colour(D.PAINT), band, band))
        else:
            blocks.append((0.0, L, r * 0.9, hb, paint, glass, BODY, BODY))
    if v == "train":                                                 # pantograph on the roof
        sc.front(cls, X - 0.6, X + 0.6, hr, hr + d.u(0.5, 1.0), Z + 3.0, dark, ex=1.0)
    sc.front(cls, xl + 0.05, xr - 0.05, 0, r * 1.1, Z + 0.3, dark)   # wheels and underbody
    for b in sorted(blocks, key=lambda b: -b[0]):                   # far block first
        block(*b)
    if Xs is not None:                                               # wheels on the visible flank
        axles = [r + 0.4, L - r - 0.5] + ([L / 2] if L > 12 else [])
        for za in axles:
            Zw = Z + za
            ry = r / Zw
            rx = min(ry, max(0.3 * ry, r * abs(Xs) / Zw ** 2))
            yc = sc.hor + (sc.ch - r) / Zw
            sc.prim(cls, yc - ry, yc + ry, sc.vx + Xs / Zw, rx, ex=2.0, rgb=dark,
                    rgb2=sc.colour(D.METAL), tex=T(0.1, grid=1.0, gx=2 * r, gy=2 * r, gfill=0.4))
    if Z < 35:                                                       # tail or head lights
        lamp = LAMPS[0] if facing > 0 else (1.0, 0.95, 0.8)
        for x0 in (xl + 0.08, xr - 0.33):
            sc.front(cls, x0, x0 + 0.25, hb - 0.3, hb - 0.12, Z - 0.01, lamp)


def animal(sc, cls, variant, xc, yg, s, fur, facing=1.0):
    """Quadrupeds share one body plan; cat/dog and cow/sheep/horse differ in proportions and
    texture only (look-alike groups)."""
    d = sc.d
    L, hb, leg, hr, neck, tail = {
        "cat": (d.u(.42, .55), d.u(.17, .24), d.u(.15, .22), d.u(.08, .11), .06, .3),
        "dog": (d.u(.5, .9), d.u(.24, .38), d.u(.25, .45), d.u(.1, .16), .14, .25),
        "sheep": (d.u(.9, 1.2), d.u(.5, .65), d.u(.28, .38), d.u(.12, .16), .12, .1),
        "cow": (d.u(1.8, 2.2), d.u(.75, .9), d.u(.55, .7), d.u(.2, .27), .1, .6),
        "horse": (d.u(1.7, 2.1), d.u(.6, .75), d.u(.85, 1.0), d.u(.17, .23), .6, .6)}[variant]
    tex = {"sheep": T(0.7, rnd=0.3), "cow": T(0.15, grid=d.u(0.5, 1.0), gx=d.u(0.4, 0.9),
                                                gy=d.u(0.3, 0.6), gfill=0.5),
           "cat": T(0.25, d.u(0, 0.6), d.u(6, 12), 0.3)}.get(variant, T(0.25, rnd=0.3))
    rgb2 = sc.colour(D.WHITE) if variant == "cow" else scaled(fur, 0.6)
    darker = scaled(fur, 0.7)
    for k, dx in enumerate((0.36, 0.28, -0.3, -0.38)):             # far legs darker
        sc.part(cls, xc, yg, s, 0, leg + hb * 0.4, 0.05 * L + 0.01, None, facing * dx * L,
                facing * dx * L * 0.9, rgb=darker if k % 2 else fur)
    sc.part(cls, xc, yg, s, leg, leg + hb, L / 2, rgb=fur, rgb2=rgb2, tex=tex, ex=2.5)
    hx, hy = facing * (L / 2 + hr * 0.2), leg + hb * 0.8 + neck
    sc.part(cls, xc, yg, s, leg + hb * 0.4, hy, hr * 0.7, None, facing * L * 0.4, hx, rgb=fur)
    elong = 1.6 if variant in ("horse", "cow", "dog") else 1.0
    sc.part(cls, xc, yg, s, hy - hr, hy + hr, hr * elong, dlo=hx + facing * hr * 0.4,
            dhi=hx + facing * hr * 0.4, rgb=darker if variant == "sheep" else fur, ex=2.0)
    if variant in ("cat", "dog"):                                  # ears
        sc.part(cls, xc, yg, s, hy + hr * 0.5, hy + hr * 1.6, hr * 0.45, 0.0, hx, hx, rgb=darker)
    tl = facing * -L / 2
    up = 1.0 if variant == "cat" else -0.6
    sc.part(cls, xc, yg, s, leg + hb * (0.7 + min(0, up) * 0.8), leg + hb * 0.7 + max(0, up) * tail,
            0.03 + 0.02 * L, None, tl * 1.05 - facing * (tail * 0.3 if up > 0 else 0.05), tl,
            rgb=darker)


# w, depth, height ranges of furniture (metres)
FURN = {"cabinet": ((0.5, 1.8), (0.4, 0.6), (0.7, 2.0)), "bed": ((1.2, 2.0), (1.9, 2.1), (0.35, 0.6)),
        "chair": ((0.42, 0.5), (0.42, 0.5), (0.85, 1.0)), "sofa": ((1.5, 2.4), (0.8, 0.95), (0.75, 0.9)),
        "table": ((0.8, 1.8), (0.6, 1.0), (0.7, 0.78)), "desk": ((1.0, 1.6), (0.55, 0.75), (0.72, 0.78)),
        "bookshelf": ((0.7, 1.2), (0.28, 0.38), (1.5, 2.2)),
        "shelves": ((0.6, 1.5), (0.25, 0.4), (0.8, 1.8)),
        "counter": ((1.2, 3.0), (0.55, 0.65), (0.86, 0.94)),
        "dresser": ((0.9, 1.6), (0.45, 0.55), (0.75, 1.2)),
        "night_stand": ((0.4, 0.55), (0.35, 0.45), (0.45, 0.65)),
        "fridge": ((0.6, 0.9), (0.6, 0.7), (1.5, 1.9)), "toilet": ((0.36, 0.42), (0.6, 0.7), (0.75, 0.85)),
        "sink": ((0.45, 0.65), (0.4, 0.5), (0.8, 0.9)), "bathtub": ((0.7, 0.8), (1.5, 1.75), (0.5, 0.6))}


def furniture(sc, cls, v, X, Z, col, dims):
    """Furniture-like boxes (one concept, variants differ in proportions and texture).
    Returns the support surfaces (X, Z, w, dep, h) where small items may sit."""
    d = sc.d
    w, dep, h = dims
    dark = scaled(col, 0.6)
    panels = T(0.12, grid=0.5, gx=w / d.int(1, 3), gy=h / d.int(1, 4), gfill=0.9)
    if v == "bed":
        sc.box(cls, X, Z + dep - 0.08, w, 0.08, 0, h + d.u(0.3, 0.7), sc.colour(D.WOOD))
        sc.box(cls, X, Z, w, dep - 0.08, 0, h, col, tex=T(0.2, d.u(0, 0.4), d.u(1, 4)), ex=6.0)
        return [(X, Z + dep - 0.6, w, 0.5, h)]
    if v in ("chair", "sofa"):
        seat = 0.45 if v == "chair" else 0.42
        sc.box(cls, X, Z + dep - 0.15, w, 0.15, seat, h, col, tex=T(0.2))
        if v == "sofa":
            for xa in (X - w / 2 + 0.1, X + w / 2 - 0.1):
                sc.box(cls, xa, Z, 0.2, dep, 0.1, seat + 0.2, scaled(col, 0.9), tex=T(0.2))
            sc.box(cls, X, Z, w - 0.4, dep - 0.15, 0.1, seat, col, tex=T(0.25))
            return [(X, Z + dep - 0.4, w - 0.4, 0.3, seat)]
        sc.box(cls, X, Z, w, dep - 0.1, seat - 0.05, seat, col)
        for xa in (X - w / 2 + 0.03, X + w / 2 - 0.03):
            sc.front(cls, xa - 0.025, xa + 0.025, 0, seat - 0.05, Z + 0.03, dark)
        return []
    if v in ("table", "desk"):
        for xa in (X - w / 2 + 0.05, X + w / 2 - 0.05):
            sc.front(cls, xa - 0.03, xa + 0.03, 0, h, Z + 0.05, dark)
        if v == "desk":
            sc.box(cls, X + w / 2 - 0.22, Z + 0.02, 0.4, dep - 0.04, 0, h, col, tex=panels)
        sc.box(cls, X, Z, w, dep, h - 0.05, h, col, tex=T(0.15, 0.2, d.u(2, 6)))
        return [(X, Z, w, dep, h)]
    if v == "toilet":
        sc.box(cls, X, Z + dep - 0.2, w, 0.2, 0.4, h, col, tex=T(0.05, rnd=0.3))
        sc.box(cls, X, Z, w, dep - 0.2, 0, 0.42, col, tex=T(0.05, rnd=0.5), ex=2.0, taper=1.2)
        return []
    if v == "sink":
        sc.front(cls, X - 0.1, X + 0.1, 0, h - 0.1, Z + dep / 2, col, tex=T(0.05, rnd=0.4))
        sc.box(cls, X, Z, w, dep, h - 0.15, h, col, tex=T(0.05, rnd=0.4), ex=3.0)
        return []
    tex = {"bookshelf": T(0.2, 0.9, d.u(6, 14), 0.0, grid=0.3, gx=w, gy=d.u(0.3, 0.4), gfill=0.9),
           "shelves": T(0.15, 0.7, d.u(1.5, 3.5), 1.571), "fridge": T(0.05, grid=0.15, gx=w,
                                                                    gy=h * 0.4, gfill=0.97, rnd=0.3),
           "bathtub": T(0.05, rnd=0.3), "counter": panels}.get(v, panels)
    rgb2 = sc.colour(D.ANY) if v == "bookshelf" else dark
    sc.box(cls, X, Z, w, dep, 0, h, col, rgb2, tex,
           top_rgb=sc.colour(D.CONCRETE) if v == "counter" else None)
    return [] if v in ("fridge", "bathtub") or h > 1.6 else [(X, Z, w, dep, h)]


# width, bottom, top (metres above the floor) of wall-mounted flats
WALL = {"door": ((0.8, 0.95), (0.0, 0.0), (2.0, 2.15)), "window": ((0.8, 2.0), (0.8, 1.0), (1.9, 2.3)),
        "picture": ((0.3, 1.0), (1.2, 1.5), (1.6, 2.1)), "blinds": ((0.8, 1.8), (0.8, 1.0), (1.9, 2.3)),
        "curtain": ((0.5, 1.2), (0.0, 0.3), (2.1, 2.4)), "mirror": ((0.4, 1.0), (1.0, 1.3), (1.8, 2.0)),
        "whiteboard": ((1.2, 2.4), (0.9, 1.1), (1.9, 2.1)), "tv": ((0.8, 1.4), (0.9, 1.3), (1.5, 2.0)),
        "shower_curtain": ((0.7, 1.5), (0.1, 0.3), (1.9, 2.1))}


def wall_item(sc, cls, v, col, wall):
    """A flat on a wall: wall = ('back', Zb, xlo, xhi) or ('side', Xs, zlo, zhi)."""
    d = sc.d
    (w0, w1), (b0, b1), (t0, t1) = WALL[v]
    w, lo, hi = d.u(w0, w1), d.u(b0, b1), d.u(t0, t1)
    frame = sc.colour(D.WHITE if d.chance(0.5) else D.WOOD)
    rgb, rgb2, tex = frame, col, T(0.15, grid=1.0, gx=w, gy=hi - lo, gfill=0.85)
    if v == "window":
        nc, nr = d.int(1, 3), d.int(1, 2)
        tex = T(0.2, grid=1.0, gx=w / nc, gy=(hi - lo) / nr, gfill=0.85)
    elif v in ("curtain", "shower_curtain", "blinds"):
        rgb, rgb2 = col, scaled(col, 0.7)
        tex = T(0.2, 0.6, d.u(2, 6) if v != "blinds" else d.u(8, 15), 0.0 if v != "blinds" else 1.571)
    elif v == "door":
        rgb, rgb2, tex = col, scaled(col, 0.85), T(0.15, grid=0.6, gx=w, gy=(hi - lo) / 2, gfill=0.8)
    elif v == "tv":
        rgb, rgb2 = sc.colour(D.DARK), col if d.chance(0.5) else sc.colour(D.ANY)
        tex = T(0.3, grid=1.0, gx=w, gy=hi - lo, gfill=0.92)
    if wall[0] == "back":
        _, Zb, xlo, xhi = wall
        if xhi - xlo < w:
            return
        x = d.u(xlo + w / 2, xhi - w / 2)
        sc.front(cls, x - w / 2, x + w / 2, lo, hi, Zb, rgb, rgb2, tex)
    else:
        _, Xs, zlo, zhi = wall
        if zhi - zlo < w:
            return
        z = d.u(zlo, zhi - w)
        sc.side(cls, Xs, z, z + w, lo, hi, scaled(rgb, sc.k_side), rgb2, tex)


def small(sc, cls, v, col, support):
    """Small items sit on a support surface (context): pillows on beds, books on desks..."""
    d = sc.d
    X, Z, w, dep, h = support
    x, z = X + d.u(-0.4, 0.4) * w, Z + d.u(0.0, 0.6) * dep
    if v == "paper":
        sc.top(cls, x - 0.11, x + 0.11, z, z + 0.3, h + 0.005, col, tex=T(0.05))
    elif v == "pillow":
        sc.box(cls, x, z, d.u(0.4, 0.6), 0.25, h, h + d.u(0.12, 0.25), col, tex=T(0.2), ex=3.0)
    elif v == "books":
        sc.box(cls, x, z, d.u(0.15, 0.5), 0.22, h, h + d.u(0.05, 0.28), col, sc.colour(D.ANY),
               T(0.1, 0.9, d.u(15, 40)))
    elif v == "lamp":
        hh = d.u(0.3, 0.6) if h > 0.1 else d.u(1.3, 1.7)
        sc.front(cls, x - 0.015, x + 0.015, h, h + hh, z + 0.1, scaled(col, 0.5))
        sc.box(cls, x, z, d.u(0.25, 0.45), 0.3, h + hh * 0.75, h + hh + 0.05, col, tex=T(0.1),
               taper=0.6)
    elif v in ("bag", "clothes", "towel"):
        sc.box(cls, x, z, d.u(0.3, 0.6), 0.2, h, h + d.u(0.2, 0.45), col,
               tex=T(0.3, d.u(0, 0.5), d.u(2, 8)), ex=d.u(2.0, 4.0), taper=d.u(0.6, 1.0))
    elif v == "tv":
        ww = d.u(0.6, 1.2)
        sc.box(cls, x, z, ww, 0.1, h + 0.05, h + 0.05 + ww * 0.58, sc.colour(D.DARK), col,
               T(0.3, grid=1.0, gx=ww, gy=ww * 0.58, gfill=0.9))
    else:                                            # box
        sc.box(cls, x, z, d.u(0.2, 0.6), d.u(0.2, 0.5), h, h + d.u(0.15, 0.5), col,
               tex=T(0.15, 0.2, d.u(1, 4), 1.571))


def flyer(sc, cls, v, xc, yg, s, col):
    """Aeroplane or bird: body, wing, tail (side view)."""
    d = sc.d
    f = 1.0 if d.chance(0.5) else -1.0
    L = d.u(20, 40) if v == "aeroplane" else d.u(0.2, 0.5)
    th = L * (0.1 if v == "aeroplane" else 0.3)
    y = th * 1.2
    liv = T(0.05, 0.5 * d.u(), 0.4 / L, 1.571, rnd=0.3)
    sc.part(cls, xc, yg, s, y + th * 0.3, y + th * 0.3 + L * 0.18, L * 0.08, L * 0.02,
            -f * L * 0.42, -f * L * 0.47, rgb=col, tex=liv)                       # tail fin
    sc.part(cls, xc, yg, s, y - th / 2, y + th / 2, L / 2, rgb=col, rgb2=sc.colour(D.ANY),
            tex=liv, ex=2.5 if v == "aeroplane" else 2.0)                           # body
    wing = scaled(col, 0.8)
    if v == "aeroplane":
        sc.part(cls, xc, yg, s, y - th * 1.2, y, L * 0.12, L * 0.08, f * L * 0.05, -f * L * 0.02,
                rgb=wing)
    else:
        sc.part(cls, xc, yg, s, y + th * 0.2, y + th * (0.3 + 2 * d.u()), L * 0.2, L * 0.05,
                -f * L * 0.05, -f * L * 0.2, rgb=wing, tex=T(0.3))
        sc.part(cls, xc, yg, s, y, y + th * 0.9, th * 0.4, dlo=f * L * 0.45, dhi=f * L * 0.45,
                rgb=col, ex=2.0)                                                    # head


def boat(sc, cls, xc, yg, s, col):
    d = sc.d
    L = d.u(3, 12)
    hh = L * d.u(0.1, 0.18)
    sc.part(cls, xc, yg, s, 0, hh, L * 0.4, L / 2, rgb=col, rgb2=sc.colour(D.WHITE),
            tex=T(0.15, 0.4, 1.0 / hh, 1.571))
    if d.chance(0.5):                                # sailboat
        m = L * d.u(0.9, 1.4)
        sc.part(cls, xc, yg, s, hh, hh + m, 0.04 * L)
        sc.part(cls, xc, yg, s, hh + 0.1 * m, hh + m, L * 0.3, 0.0, L * 0.3, 0.0,
                rgb=sc.colour(D.WHITE), tex=T(0.1))
    else:                                            # cabin boat
        sc.part(cls, xc, yg, s, hh, hh * 2, L * 0.2, L * 0.15, dlo=-L * 0.05, dhi=-L * 0.05,
                rgb=sc.colour(D.WHITE), rgb2=sc.colour(GLASS),
                tex=T(0.1, grid=1.0, gx=L * 0.12, gy=hh, gfill=0.6))


def bottle(sc, cls, xc, yg, s, col):
    d = sc.d
    h, r = d.u(0.2, 0.35), d.u(0.03, 0.05)
    lab = T(0.1, grid=d.u(0, 1), gx=4 * r, gy=h * 0.6, gfill=0.6)
    sc.part(cls, xc, yg, s, 0, 0.62 * h, r, rgb=col, rgb2=sc.colour(D.ANY), tex=lab, ex=8.0)
    sc.part(cls, xc, yg, s, 0.6 * h, 0.8 * h, r, r * 0.35, rgb=col, tex=T(0.1, rnd=0.4))
    sc.part(cls, xc, yg, s, 0.78 * h, h, r * 0.32, rgb=col)
    sc.part(cls, xc, yg, s, 0.96 * h, 1.01 * h, r * 0.36, rgb=sc.colour(D.PAINT))


def plant(sc, cls, xc, yg, s, col):
    d = sc.d
    hp, rp = d.u(0.15, 0.4), d.u(0.1, 0.25)
    sc.part(cls, xc, yg, s, 0, hp, rp * 0.75, rp, rgb=sc.colour(D.DIRT), tex=T(0.1, rnd=0.3))
    r = rp * d.u(1.0, 2.0)
    for _ in range(d.int(2, 4)):
        dx, cy = d.u(-0.7, 0.7) * r, hp + r * d.u(0.5, 1.3)
        sc.part(cls, xc, yg, s, cy - r * 0.7, cy + r * 0.7, r * 0.7, dlo=dx, dhi=dx, rgb=col,
                rgb2=scaled(col, 0.5), tex=T(0.6, rnd=0.3), ex=d.u(1.5, 2.5))


def screen(sc, cls, xc, yg, s, col):
    d = sc.d
    w = d.u(0.4, 0.8)
    hh = w * d.u(0.6, 0.8)
    sc.part(cls, xc, yg, s, 0, 0.03, w * 0.25, rgb=col)
    sc.part(cls, xc, yg, s, 0, 0.12, 0.03, rgb=col)
    sc.part(cls, xc, yg, s, 0.1, 0.1 + hh, w / 2, rgb=col, rgb2=sc.colour(D.ANY),
            tex=T(0.3, grid=1.0, gx=w, gy=hh, gfill=0.88))


def clutter(sc, cls, xc, yg, s, col):
    """Unlabelled stuff (bins, boxes, blobs): void in street/room, background in objects."""
    d = sc.d
    h, w = d.u(0.3, 1.5), d.u(0.15, 0.8)
    sc.part(cls, xc, yg, s, 0, h, w, w * d.u(0.6, 1.2), rgb=col,
            tex=T(0.3, d.u(0, 0.5), d.u(1, 6), d.u(0, 3.14)), ex=d.pick((0.0, 2.0, 4.0)))


def hood(sc):
    """Ego-vehicle bonnet at the bottom (void in Cityscapes-like labels)."""
    d = sc.d
    top = 1.0 - d.u(0.05, 0.14)
    col = sc.colour(D.PAINT, 0.7)
    sc.prim(D.IGNORE_INDEX, top, 1.0 + (1.0 - top), sc.A / 2 + d.u(-0.1, 0.1), sc.A * d.u(0.55, 0.8),
            ex=2.0, rgb=col, rgb2=scaled(col, 1.6), tex=T(0.1, 0.4, 0.5, 1.571, rnd=0.5))


# -- layouts: where the concepts go in one image ------------------------------------------------
def col(sc, concept, fallback=None, k=1.0):
    e = sc.entry(concept, fallback)
    return sc.colour(e.hsv if e else D.ANY, k)


def depth(sc, zmin, far=60.0):
    """Depth of a thing: biased towards the camera, never nearer than the bottom row."""
    return zmin + 0.8 + (far - zmin) * sc.d.u() ** 1.6


def street(sc):
    d, st, A = sc.d, sc.st, sc.A
    sc.hor, sc.ch, sc.vx = d.u(*st.horizon), d.u(*st.cam_height), A * d.u(0.3, 0.7)
    zmin, zend = sc.ch / (1.0 - sc.hor), d.u(60, 250)
    cross = (d.u(12, 45), d.u(8, 16)) if d.chance(0.3) else (1e9, 0.0)   # side street: depth, width
    has = lambda c: sc.n(c) > 0                      # noqa: E731
    sc.prim(sc.cid("sky"), 0.0, 1.0, A / 2, A / 2 + 0.05, rgb=col(sc, "sky"),
            rgb2=sc.colour(D.WHITE), tex=T(0.15, shade=-0.4), mp=1e-3)   # mp: far away (haze)
    if has("building") and d.chance(0.7):            # skyline where the street bends away
        x = -d.u(30, 80)
        for _ in range(6):
            w = d.u(10, 40)
            sc.front(sc.cid("building"), x, x + w, 0, d.u(5, 40), zend + d.u(0, 30),
                     col(sc, "building", k=0.8), sc.colour(GLASS), T(0.2, grid=0.5, gx=4, gy=3.5))
            x += w
    elif has("tree") and d.chance(0.7):
        sc.front(sc.cid("tree"), -400, 400, 0, d.u(6, 20), zend + 20, col(sc, "tree"), None,
                 T(0.6, rnd=0.2))
    rl, rr = d.u(*st.view_width), d.u(*st.view_width)
    sides = []
    for sgn, r in ((-1.0, rl), (1.0, rr)):
        band = ("sidewalk" if has("sidewalk") and d.chance(0.9) else
                "terrain" if has("terrain") else "road")
        sides.append((sgn, r, r + d.u(1.5, 5.0), band))
    base = "terrain" if has("terrain") else "sidewalk"
    sc.top(sc.cid(base, "road"), -5e3, 5e3, zmin * 0.5, 5e3, 0.0, col(sc, base, "road"), None,
           ground_tex(d))
    grass = T(0.45, 0.15, d.u(3, 8), 1.571)
    for sgn, r, f, band in sides:                    # pavements with kerbs, verges
        lo, hi = sorted((sgn * r, sgn * f))
        raised = 0.12 if band == "sidewalk" else 0.0
        sc.top(sc.cid(band, "road"), lo, hi, zmin * 0.5, zend, raised, col(sc, band, "road"),
               None, grass if band == "terrain" else ground_tex(d))
        if raised:
            sc.side(sc.cid("curb", "sidewalk"), sgn * r, zmin * 0.5, zend, 0, 0.12,
                    col(sc, "curb", "sidewalk", 0.9))
        if has("terrain") and band != "terrain" and d.chance(0.45):
            tw = d.u(0.6, min(3.0, f - r - 0.3))
            edge = f if d.chance(0.6) else r + tw
            lo, hi = sorted((sgn * (edge - tw), sgn * edge))
            sc.top(sc.cid("terrain"), lo, hi, d.u(zmin * 0.5, 20), d.u(30, zend), raised + 0.01,
                   col(sc, "terrain"), None, grass)
    road = sc.entry("road")
    rcol = col(sc, "road")
    sc.top(sc.cid("road"), -rl, rr, zmin * 0.5, zend, 0.0, rcol, scaled(rcol, 0.8), ground_tex(d))
    if cross[1]:                                     # the side street cuts the pavements
        sc.top(sc.cid("road"), -500, 500, cross[0], cross[0] + cross[1], 0.0, rcol, None,
               ground_tex(d))
    for e, n in sc.ents("patch") + ([(road, 3)] if road.variant == "rough" else []):
        for _ in range(n):                           # mud, ragged edges of unstructured roads
            sgn, r, f, _ = d.pick(sides)
            X, Z, w = sgn * (r + d.u(-1.5, 1.0)), depth(sc, zmin, 50), d.u(0.8, 3.0)
            sc.top(sc.label_id(e), X - w, X + w, Z, Z + d.u(3, 15), 0.003, sc.colour(e.hsv),
                   None, ground_tex(d), ex=2.0)
    if has("marking"):
        mcls, mcol = sc.cid("marking"), col(sc, "marking")
        xs = [-rl + 0.3, rr - 0.3] + [x for x in (-3.3, 3.3, -6.6, 6.6) if -rl + 1 < x < rr - 1]
        for _ in range(min(sc.n("marking"), len(xs))):
            X = xs.pop(d.int(0, len(xs) - 1))
            if d.chance(0.6):                        # dashed
                z = zmin * 0.6 + d.u(0, 6)
                for _ in range(5):
                    sc.top(mcls, X - 0.07, X + 0.07, z, z + 3, 0.0, mcol)
                    z += d.u(9, 12)
            else:
                sc.top(mcls, X - 0.07, X + 0.07, zmin * 0.5, min(zend, 120), 0.0, mcol)
        if d.chance(0.15):                           # zebra crossing
            z = d.u(zmin + 2, 25)
            sc.top(mcls, -rl, rr, z, z + 3, 0.0, rcol, mcol, T(0.1, 1.0, d.u(0.6, 1.0)))
    for sgn, r, f, band in sides:                    # facades
        if not has("building") or d.chance(0.12):
            if has("tree") and d.chance(0.7):        # open side: a tree line behind the verge
                sc.side(sc.cid("tree"), sgn * (f + d.u(0, 3)), zmin * 0.5, zend, 0,
                        d.u(3, 12), col(sc, "tree", k=0.8), None, T(0.6, rnd=0.2))
            continue
        z, k = zmin * d.u(0.3, 0.9), 0
        shade = sc.k_side if sgn < 0 else 1.45 - sc.k_side
        while z < zend and k < 6:
            L = d.u(6, 30)
            if d.chance(0.12) or (z < cross[0] + cross[1] and z + L > cross[0]):
                z = max(z + L, cross[0] + cross[1]) if z + L > cross[0] else z + L
                continue
            X, c = sgn * (f + d.u(0, 1.2)), col(sc, "building", k=shade)
            tex = (T(0.25, d.u(0.1, 0.4), d.u(0.2, 1.0), 1.571) if d.chance(0.3) else
                   T(0.15, grid=d.u(0.4, 0.95), gx=d.u(2.5, 5), gy=d.u(2.8, 3.8),
                     gfill=d.u(0.35, 0.7), shade=d.u(-0.2, 0.2)))
            sc.side(sc.cid("building"), X, z, z + L, 0, d.u(8, 40), c, sc.colour(GLASS), tex)
            if d.chance(0.35):                       # shop fronts
                sc.side(sc.cid("building"), X, z, z + L, 0, d.u(3, 4.5),
                        col(sc, "building", k=shade), sc.colour(GLASS),
                        T(0.15, grid=0.9, gx=d.u(2, 5), gy=4, gfill=0.7))
            k, z = k + 1, z + L
    for concept, hr, inset, tex in (
            ("wall", (1.0, 3.5), 0.3, T(0.25, grid=0.3, gx=d.u(.4, 1.5), gy=d.u(.2, .6), gfill=.92,
                                        shade=d.u(-0.5, 0.5))),
            ("fence", (0.9, 2.2), 0.4, T(0.15, 0.8, d.u(2, 8))), ("hedge", (0.6, 2.0), 0.6,
                                                                  T(0.6, rnd=0.2)),
            ("guard_rail", (0.7, 0.9), None, T(0.1, 0.5, 3.0, 1.571))):
        for e, n in sc.ents(concept):
            for _ in range(n):
                sgn, r, f, _ = d.pick(sides)
                X = sgn * (r + 0.3) if inset is None else sgn * (f - inset * d.u(0.5, 1.5))
                z = zmin * d.u(0.5, 1.0) + d.u(0, 30)
                if concept == "wall" and d.chance(0.5):          # near, along the pavement
                    X, z = sgn * d.u(r + 0.5, f), zmin * d.u(0.3, 1.0)
                c = sc.colour(e.hsv, sc.k_side if sgn < 0 else 1.45 - sc.k_side)
                sc.side(sc.label_id(e), X, z, z + d.u(10, 60), 0.45 if inset is None else 0.0,
                        d.u(*hr), c, None, tex)
    occ = []
    for e, n in sc.ents("vehicle"):
        for _ in range(n):
            dims = vehicle_dims(d, e.variant)
            w, L = dims[0], dims[1]
            for _try in range(4):
                sgn, r, f, _ = d.pick(sides)
                if e.variant == "train":                         # tram in the next lane
                    X, facing = sgn * d.u(3.0, 6.0), d.pick((1.0, -1.0))
                elif d.chance(0.5):                              # parked at the kerb
                    X, facing = sgn * (r - w / 2 - d.u(0.1, 0.4)), d.pick((1.0, -1.0))
                else:
                    X = d.u(-rl + w / 2 + 0.2, rr - w / 2 - 0.2) if rl + rr > w + 0.4 else 0.0
                    facing = 1.0 if X > d.u(-3.0, 0.0) else -1.0
                Z = depth(sc, zmin, 30 if e.variant in ("train", "bus", "truck") else 60)
                if all(abs(X - x2) > (w + w2) / 2 + 0.2 or Z + L < z2 or z2 + l2 < Z
                       for x2, z2, w2, l2 in occ):
                    occ.append((X, Z, w, L))
                    sc.thing(Z, vehicle, sc.label_id(e), e.variant, X, Z, sc.colour(e.hsv), facing,
                             dims)
                    break
    rider = sc.entry("rider")
    for e, n in sc.ents("two_wheeler"):
        for _ in range(n):
            rides = rider is not None and d.chance(rider.presence)
            sgn, r, f, _ = d.pick(sides)
            if rides and d.chance(0.6):
                X, side_view = d.u(-rl + 0.5, rr - 0.5), False
            else:
                X, side_view = sgn * d.u(r - 1.0, f - 0.3), True
            Z = depth(sc, zmin, 18)
            sc.thing(Z, two_wheeler, sc.label_id(e), e.variant, *sc.at(X, Z), sc.colour(e.hsv),
                     (sc.label_id(rider), rider.hsv) if rides else None, side_view)
    for concept, fn in (("tree", tree), ("person", person), ("animal", animal),
                        ("clutter", clutter), ("obstacle", None), ("billboard", None)):
        for e, n in sc.ents(concept):
            for _ in range(n):
                sgn, r, f, _ = d.pick(sides)
                on_road = concept in ("person", "animal") and d.chance(0.15)
                X = d.u(-rl, rr) if on_road else sgn * d.u(r + 0.3, max(r + 0.4, f - 0.3))
                Z = depth(sc, zmin, 22 if concept == "person" else 35)
                cls, c = sc.label_id(e), sc.colour(e.hsv)
                if concept == "tree":
                    sc.thing(Z, tree, cls, X, Z, c)
                elif concept == "animal":
                    sc.thing(Z, animal, cls, e.variant, *sc.at(X, Z), c, d.pick((1.0, -1.0)))
                elif concept == "obstacle":
                    sc.thing(Z, Scene.box, cls, sgn * (r + d.u(-0.5, 0.8)), Z, d.u(0.3, 2.0),
                             d.u(0.3, 1.0), 0.0, d.u(0.5, 1.3), c, sc.colour(D.WHITE),
                             T(0.1, d.u(0, 0.9), d.u(1, 3), 0.785))
                elif concept == "billboard":
                    sc.thing(Z, billboard, cls, X, Z, c)
                elif fn is not None:
                    fn_args = (e.hsv,) if concept == "person" else (c,)
                    sc.thing(Z, fn, cls, *sc.at(X, Z), *fn_args)
    for _ in range(round(d.u(0, 2 * st.clutter))):  # unlabelled objects (void)
        sgn, r, f, _ = d.pick(sides)
        Z = depth(sc, zmin, 40)
        sc.thing(Z, clutter, D.IGNORE_INDEX, *sc.at(sgn * d.u(r, f), Z), sc.colour(D.ANY))
    poles = sc.n("pole")
    lights = [(sc.label_id(e), sc.colour(e.hsv)) for e, n in sc.ents("light") for _ in range(n)]
    signs = [(sc.label_id(e), sc.colour(e.hsv)) for e, n in sc.ents("sign") for _ in range(n)]
    for k in range(max(poles, len(lights), len(signs))):
        sgn, r, f, _ = d.pick(sides)
        X, Z = sgn * (r + d.u(0.2, 0.7)), depth(sc, zmin, 22)
        j = max(poles, len(signs)) - 1 - k
        sc.thing(Z, pole, sc.cid("pole"), X, Z, col(sc, "pole"),
                 signs[j] if 0 <= j < len(signs) else None, lights[k] if k < len(lights) else None)
    for e, n in sc.ents("bridge"):
        Z = d.u(20, 60)
        sc.thing(Z, bridge, sc.label_id(e), Z, sc.colour(e.hsv), rl, rr)
    sc.flush()
    if d.chance(st.hood):
        hood(sc)


def billboard(sc, cls, X, Z, c):
    d = sc.d
    w, lo = d.u(1.5, 4.0), d.u(2.0, 5.0)
    for x in (X - w * 0.6, X + w * 0.6):
        sc.front(sc.cid("pole"), x - 0.08, x + 0.08, 0, lo, Z + 0.1, col(sc, "pole"))
    sc.front(cls, X - w, X + w, lo, lo + w * d.u(0.4, 0.8), Z, c, sc.colour(D.ANY),
             T(0.3, d.u(0, 0.8), d.u(0.5, 3), d.u(0, 3.14), grid=d.u(0, 1), gx=w, gy=w / 2))


def bridge(sc, cls, Z, c, rl, rr):
    d = sc.d
    h0 = d.u(5, 7)
    sc.front(cls, -300, 300, h0, h0 + d.u(1.2, 2.5), Z, c, tex=T(0.2, 0.2, 0.5, 1.571))
    for x in (-rl - 1.0, rr + 1.0):
        sc.front(cls, x - 0.6, x + 0.6, 0, h0, Z + 0.5, scaled(c, 0.8))


ROOMS = {"bedroom": "bed night_stand dresser cabinet chair lamp pillow clothes curtain window "
                    "picture door blinds mirror box bag books tv",
         "living": "sofa table chair cabinet tv picture lamp pillow window curtain door shelves "
                   "bookshelf books box bag person",
         "kitchen": "counter cabinet fridge sink table chair window door blinds box paper towel",
         "bathroom": "toilet sink bathtub towel mirror shower_curtain cabinet door window counter",
         "office": "desk chair shelves bookshelf books paper whiteboard box lamp window blinds "
                   "door picture cabinet person bag table"}
SUPPORTS = {"pillow": "bed sofa", "clothes": "bed sofa chair", "tv": "cabinet dresser table desk",
            "lamp": "night_stand desk table dresser", "books": "desk table shelves cabinet",
            "paper": "desk table counter", "towel": "counter", "box": "cabinet shelves desk",
            "bag": "chair bed sofa"}


def room(sc):
    d, st, A = sc.d, sc.st, sc.A
    sc.hor, sc.ch, sc.vx = d.u(*st.horizon), d.u(*st.cam_height), A * d.u(0.35, 0.65)
    kind = ROOMS[d.pick(sorted(ROOMS))].split()
    keep = lambda e: e.variant in kind or d.chance(0.15)   # noqa: E731  room type = context
    zmin = sc.ch / (1.0 - sc.hor)
    Wl, Wr, Hr = d.u(1.2, 3.5), d.u(1.2, 3.5), d.u(2.4, 3.2)
    Zb = d.u(max(2.5, zmin + 1.5), max(7.0, zmin + 3.0))
    wall, wc = sc.cid("room_wall"), col(sc, "room_wall")
    wtex = T(0.1, d.u(0, 0.3), d.u(2, 10)) if d.chance(0.3) else T(d.u(0.05, 0.25))
    sc.prim(sc.cid("ceiling"), 0.0, 1.0, A / 2, A / 2 + 0.05, rgb=col(sc, "ceiling"),
            tex=T(0.1, shade=0.3))
    sc.front(wall, -Wl, Wr, 0, Hr, Zb, wc, None, wtex)
    sc.side(wall, -Wl, 0.2, Zb, 0, Hr, scaled(wc, sc.k_side), None, wtex)
    sc.side(wall, Wr, 0.2, Zb, 0, Hr, scaled(wc, 1.45 - sc.k_side), None, wtex)
    fc = col(sc, "floor")
    sc.top(sc.cid("floor"), -Wl, Wr, 0.2, Zb, 0.0, fc, scaled(fc, 0.8), ground_tex(d))
    for e, n in sc.ents("wall_item"):
        for _ in range(n if keep(e) else 0):
            where = (("back", Zb - 0.01, -Wl + 0.1, Wr - 0.1) if d.chance(0.6) else
                     ("side", d.pick((-Wl + 0.01, Wr - 0.01)), zmin, Zb - 0.05))
            wall_item(sc, sc.label_id(e), e.variant, sc.colour(e.hsv), where)
    for e, n in sc.ents("mat"):
        X, Z = d.u(-Wl, Wr) * 0.6, d.u(zmin, Zb - 1.0)
        sc.top(sc.label_id(e), X - 0.8, X + 0.8, Z, Z + d.u(0.6, 2.0), 0.005, sc.colour(e.hsv),
               None, T(0.2, 0.5, d.u(1, 5)))
    supports = []
    furn = sorted(sc.ents("furniture"), key=lambda t: t[0].variant == "chair")
    for e, n in furn:
        for _ in range(n if keep(e) else 0):
            cls, c = sc.label_id(e), sc.colour(e.hsv)
            if e.variant == "person":
                X, Z = d.u(-Wl + 0.3, Wr - 0.3), d.u(zmin + 0.3, Zb - 0.5)
                sc.thing(Z, person, cls, *sc.at(X, Z), e.hsv)
                continue
            w, dep, h = dims = tuple(d.u(*r) for r in FURN[e.variant])
            tables = [s for k, s in supports if k in ("table", "desk")]
            p = d.u()
            if e.variant == "chair" and tables:      # chairs stand at tables
                tx, tz, tw, _, _ = d.pick(tables)
                X, Z = tx + d.u(-0.5, 0.5) * tw, max(zmin + 0.2, tz - d.u(0.2, 0.5))
            elif p < 0.5:                            # against the back wall
                X, Z = d.u(-Wl + w / 2, max(-Wl + w / 2, Wr - w / 2)), Zb - dep - 0.02
            elif p < 0.8:                            # against a side wall
                X = d.pick((-Wl + w / 2 + 0.02, Wr - w / 2 - 0.02))
                Z = d.u(zmin + 0.3, max(zmin + 0.3, Zb - dep))
            else:
                X, Z = d.u(-Wl + w / 2, max(-Wl + w / 2, Wr - w / 2)), d.u(zmin + 0.3, Zb - dep)
            sc.thing(Z, lambda s_, *a: supports.extend((a[1], t) for t in furniture(s_, *a)),
                     cls, e.variant, X, Z, c, dims)
    for e, n in sc.ents("small"):
        for _ in range(n if keep(e) else 0):
            ok = [s for k, s in supports if k in SUPPORTS.get(e.variant, "").split()]
            if not ok and e.variant in ("pillow", "paper", "tv", "books", "towel"):
                continue
            X, Z = d.u(-Wl + 0.3, Wr - 0.3), d.u(zmin + 0.2, Zb - 0.4)
            s = d.pick(ok) if ok else (X, Z, 0.2, 0.2, 0.0)
            sc.thing(s[1] - 0.01, small, sc.label_id(e), e.variant, sc.colour(e.hsv), s)
    for e, n in sc.ents("clutter"):
        for _ in range(n + round(d.u(0, 2 * st.clutter))):
            X, Z = d.u(-Wl + 0.3, Wr - 0.3), d.u(zmin + 0.2, Zb - 0.3)
            xc, yg, s = sc.at(X, Z)
            sc.thing(Z, clutter, sc.label_id(e), xc, yg, s * 0.6, sc.colour(e.hsv))
    sc.flush()


# nominal height (m) used to frame a 2-D object at a target image height
NOMINAL = {"person": 1.75, "cat": 0.4, "dog": 0.7, "sheep": 1.0, "cow": 1.5, "horse": 1.9,
           "bicycle": 1.1, "motorcycle": 1.1, "aeroplane": 11.0, "bird": 0.3, "boat": 8.0,
           "bottle": 0.3, "plant": 0.7, "tv": 0.6}


def objects(sc):
    """Object-centric photos: 1-3 large objects on a backdrop that fits them (context)."""
    d, A = sc.d, sc.A
    sc.hor, sc.ch, sc.vx = d.u(*sc.st.horizon), d.u(1.0, 1.7), A * d.u(0.4, 0.6)
    bg = sc.cid("backdrop")
    pool = [e for e in sc.spec.entries if e.concept not in ("backdrop", "clutter")]
    total = sum(e.presence for e in pool)

    def pick():
        x = d.u(0, total)
        for e in pool:
            x -= e.presence
            if x <= 0:
                return e
        return pool[-1]

    chosen = [pick()]
    for _ in range(d.chance(0.45) + d.chance(0.25)):
        chosen.append(chosen[0] if d.chance(0.5) else pick())
    kinds = {e.variant or e.concept for e in chosen}
    if kinds & {"boat"}:
        ground, sky = (0.5, 0.62, 0.2, 0.7, 0.2, 0.7), True
    elif kinds & {"aeroplane", "bird", "cow", "sheep", "horse"} or d.chance(0.35):
        ground, sky = D.GRASS if d.chance(0.7) else D.ASPHALT, True
    else:
        ground, sky = D.WOOD if d.chance(0.5) else D.PAVING, d.chance(0.2)
    sc.prim(bg, 0.0, 1.0, A / 2, A / 2 + 0.05, rgb=sc.colour(D.SKY if sky else D.CONCRETE),
            tex=T(0.3, shade=-0.3) if sky else T(0.15, d.u(0, 0.3), d.u(1, 6)))
    if sky and d.chance(0.6):
        sc.front(bg, -300, 300, 0, d.u(5, 30), d.u(60, 200), sc.colour(D.FOLIAGE), None, T(0.5))
    gc = sc.colour(ground)
    sc.top(bg, -5e3, 5e3, 0.3, 5e3, 0.0, gc, scaled(gc, 0.7),
           T(0.2, 0.5, d.u(0.5, 2), 1.571) if "boat" in kinds else ground_tex(d))
    for e, n in sc.ents("clutter"):
        for _ in range(n):
            xc, yg = d.u(0, A), d.u(sc.hor, 1.1)
            clutter(sc, sc.label_id(e), xc, yg, d.u(0.05, 0.3), sc.colour(D.ANY))
    for k, e in enumerate(chosen):
        th = d.u(0.3, 0.85) / (1 + 0.3 * (len(chosen) - 1))
        xc = A * (k + 0.5) / len(chosen) + d.u(-0.15, 0.15)
        yg = d.u(max(sc.hor + 0.1, th - 0.05), 1.05)
        cls, c, v = sc.label_id(e), sc.colour(e.hsv), e.variant
        if e.concept in ("vehicle", "furniture"):
            dims = vehicle_dims(d, v) if e.concept == "vehicle" else tuple(d.u(*r) for r in FURN[v])
            Z = (dims[3] if e.concept == "vehicle" else dims[2]) / th
            X = (xc - sc.vx) * Z
            if e.concept == "vehicle":
                sc.thing(Z, vehicle, cls, v, X, Z, c, d.pick((1.0, -1.0)), dims)
            else:
                sc.thing(Z, furniture, cls, v, X, Z, c, dims)
            continue
        s = th / NOMINAL[v or "person"]
        Z = sc.ch / max(0.02, yg - sc.hor)
        if e.concept == "person":
            sc.thing(Z, person, cls, xc, yg, s, e.hsv)
        elif e.concept == "animal":
            sc.thing(Z, animal, cls, v, xc, yg, s, c, d.pick((1.0, -1.0)))
        elif e.concept == "two_wheeler":
            rider = (sc.cid("person"), D.CLOTHES) if d.chance(0.5) else None
            sc.thing(Z, two_wheeler, cls, v, xc, yg, s, c, rider, d.chance(0.8))
        elif e.concept == "flyer":
            sc.thing(Z, flyer, cls, v, xc, yg, s, c)
        else:
            sc.thing(Z, {"boat": boat, "bottle": bottle, "plant": plant, "screen": screen}[e.concept],
                     cls, xc, yg, s, c)
    sc.flush()


LAYOUTS = {"street": street, "room": room, "objects": objects}


def build(spec: D.DomainSpec, seed: int):
    """Scene of one image -> (prims (n, NF) float32, style (len(STYLE),) float32,
    coarse noise grid, fine noise grid). Grids have a fixed shape per domain (size-independent)."""
    sc = Scene(spec, seed)
    LAYOUTS[spec.style.scene](sc)
    sc.flush()
    style = np.asarray(style_vector(sc), dtype=np.float64)
    a = max(1, round(sc.A))
    coarse = sc.d.g.random((4, 4 * a), dtype=np.float32)
    fine = sc.d.g.random((16, 16 * a), dtype=np.float32)
    prims = np.asarray(sc.out, dtype=np.float32).reshape(-1, NF)
    return prims, style, coarse, fine
