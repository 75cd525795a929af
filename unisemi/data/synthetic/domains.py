"""Label spaces, concept mapping and styles of the synthetic domains.

A domain is a label space (the real dataset's class names in train-id order) plus a list of
`ClassSpec` entries. Each entry maps one *concept* (a generator in scene.py: 'road', 'vehicle',
'person', ...) with a variant and attributes (how often it appears, how many instances, the
per-instance colour box) to a class of that label space, or to void (label None -> 255).
Several entries may map to one class (CamVid's 'car' holds cars, trucks and buses) and one
concept serves many domains (road ~ floor, building ~ wall), so domains share geometry and
texture statistics while their palettes differ (`Style.hue_shift`, per-entry colour boxes).

Difficulty knobs live here as named fields, never in scene.py: entry `presence`/`count`
(long tail, density), `Style.colour_spread`, `texture_amp`, `density`, `clutter`, lighting,
`blur`, `noise`. They are method-agnostic: they change the world, not any learner.
"""
from __future__ import annotations

from dataclasses import dataclass

from unisemi.data.labels import IGNORE_INDEX  # noqa: F401  (re-exported)

# Per-instance colour boxes (h0, h1, s0, s1, v0, v1), h in turns (h1 > 1 wraps). Deliberately wide
# and overlapping (road ~ sidewalk ~ wall ~ building) so that colour alone does not give the class.
SKY = (0.52, 0.70, 0.0, 0.55, 0.55, 1.0)
ASPHALT = (0.0, 1.0, 0.0, 0.18, 0.14, 0.55)
PAVING = (0.0, 1.0, 0.0, 0.30, 0.28, 0.78)
MARK = (0.10, 0.17, 0.0, 0.5, 0.70, 0.97)
CONCRETE = (0.0, 1.0, 0.0, 0.30, 0.25, 0.80)
FACADE = (0.0, 1.0, 0.0, 0.50, 0.18, 0.88)
FENCE = (0.0, 1.0, 0.0, 0.45, 0.20, 0.80)
FOLIAGE = (0.12, 0.45, 0.25, 0.85, 0.10, 0.60)
GRASS = (0.08, 0.36, 0.20, 0.75, 0.22, 0.68)
DIRT = (0.04, 0.14, 0.15, 0.60, 0.20, 0.65)
METAL = (0.0, 1.0, 0.0, 0.25, 0.15, 0.70)
DARK = (0.0, 1.0, 0.0, 0.30, 0.03, 0.30)
SIGN = (0.0, 1.0, 0.30, 1.0, 0.35, 1.0)
PAINT = (0.0, 1.0, 0.0, 0.90, 0.08, 0.95)
CLOTHES = (0.0, 1.0, 0.0, 0.80, 0.08, 0.90)
WOOD = (0.03, 0.13, 0.25, 0.75, 0.20, 0.75)
FABRIC = (0.0, 1.0, 0.05, 0.70, 0.20, 0.90)
WHITE = (0.0, 1.0, 0.0, 0.12, 0.65, 0.98)
ANY = (0.0, 1.0, 0.0, 1.0, 0.10, 0.95)
FUR = (0.02, 0.12, 0.05, 0.70, 0.08, 0.92)


@dataclass(frozen=True)
class ClassSpec:
    label: str | None            # class name in the label space, None = void (255)
    concept: str                 # generator in scene.py
    presence: float = 1.0        # P(the entry is placed in an image): the long tail lives here
    count: tuple[int, int] = (1, 1)  # instances when present (scaled by Style.density)
    hsv: tuple = ANY             # per-instance colour box
    variant: str = ""            # shape variant within the concept ('bus' vs 'car', 'bed' vs 'sofa')


@dataclass(frozen=True)
class Style:
    scene: str                            # layout generator: 'street' | 'room' | 'objects'
    horizon: tuple[float, float]          # horizon row range, fraction of H (camera pitch)
    cam_height: tuple[float, float]       # metres; sets how fast things shrink with depth
    hue_shift: float = 0.0                # domain palette: rotates every colour box
    sat_scale: float = 1.0
    val_scale: float = 1.0
    colour_spread: float = 1.0            # widens every per-instance colour box (difficulty)
    texture_amp: float = 1.0              # contrast of textures (noise, stripes, windows)
    light: tuple[float, float] = (0.7, 1.3)   # per-image global brightness gain
    cast: float = 0.12                    # per-channel colour cast, +- fraction
    gradient: float = 0.35                # per-image lighting gradient strength
    shadow: float = 0.3                   # coarse illumination variation (cloud/tree shadows)
    saturation: tuple[float, float] = (0.7, 1.2)
    blur: tuple[float, float] = (0.0, 0.6)     # blend towards a small Gaussian blur
    noise: tuple[float, float] = (0.01, 0.04)  # sensor noise sigma (intensity 0..1)
    density: float = 1.0                  # multiplies instance counts (occlusion, clutter)
    clutter: float = 0.0                  # extra unlabelled clutter objects per image (mean)
    hood: float = 0.0                     # P(ego-vehicle hood at the bottom, void)
    void_band: float = 0.0                # VOC boundary band width, fraction of H (0 = none)
    haze: float = 0.01                    # max extinction per metre (aerial perspective)
    view_width: tuple[float, float] = (2.0, 9.0)  # street: metres from camera to each road edge


@dataclass(frozen=True)
class DomainSpec:
    name: str
    classes: tuple[str, ...]              # label space in train-id order
    size: tuple[int, int]                 # default (H, W)
    train_size: int
    val_size: int
    stands_in_for: str
    style: Style
    entries: tuple[ClassSpec, ...]        # concepts -> classes, with frequencies and colours

    @property
    def num_classes(self) -> int:
        return len(self.classes)


E = ClassSpec
CITYSCAPES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
              "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
              "bus", "train", "motorcycle", "bicycle")


def _street(sign="traffic sign", light="traffic light", terrain="terrain", marking="road",
            person="person", rider="rider", bicycle="bicycle", motorcycle="motorcycle",
            truck="truck", bus="bus", train="train", wall="wall", vegetation="vegetation",
            pavement="sidewalk", scale=1.0):
    """Cityscapes-like street entries; an argument renames a class, "" drops its entries, None
    makes them void. `scale` multiplies the presence of the rare classes."""
    r = lambda p: min(1.0, p * scale)   # noqa: E731
    entries = (
        E("sky", "sky", 1.0, hsv=SKY), E("road", "road", 1.0, hsv=ASPHALT),
        E(marking, "marking", 0.7, (2, 6), MARK), E(pavement, "sidewalk", 0.9, hsv=PAVING),
        E(terrain, "terrain", 0.45, (1, 2), GRASS), E("building", "building", 0.97, (3, 9), FACADE),
        E(wall, "wall", r(0.25), (1, 2), CONCRETE), E("fence", "fence", 0.35, (1, 3), FENCE),
        E(vegetation, "tree", 0.88, (3, 9), FOLIAGE), E(vegetation, "hedge", 0.45, (1, 3), FOLIAGE),
        E("pole", "pole", 0.92, (2, 7), METAL), E(light, "light", 0.4, (1, 3), DARK),
        E(sign, "sign", 0.65, (1, 4), SIGN), E(person, "person", 0.75, (2, 12), CLOTHES),
        E(rider, "rider", 0.6, hsv=CLOTHES), E("car", "vehicle", 0.93, (3, 11), PAINT, "car"),
        E(truck, "vehicle", r(0.16), (1, 1), PAINT, "truck"),
        E(bus, "vehicle", r(0.13), (1, 1), PAINT, "bus"),
        E(train, "vehicle", r(0.09), (1, 1), PAINT, "train"),
        E(motorcycle, "two_wheeler", r(0.12), (1, 3), PAINT, "motorcycle"),
        E(bicycle, "two_wheeler", 0.3, (1, 4), PAINT, "bicycle"),
        E(None, "clutter", 0.5, (1, 3), ANY))
    return tuple(e for e in entries if e.label != "")


CAMVID = ("sky", "building", "pole", "road", "pavement", "tree", "signsymbol", "fence", "car",
          "pedestrian", "bicyclist")
IDD = ("road", "drivable fallback", "sidewalk", "non-drivable fallback", "person", "rider",
       "motorcycle", "bicycle", "autorickshaw", "car", "truck", "bus", "vehicle fallback", "curb",
       "wall", "fence", "guard rail", "billboard", "traffic sign", "traffic light", "pole",
       "obs-str-bar-fallback", "building", "bridge", "vegetation", "sky")
SUN = ("wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
       "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
       "floor mat", "clothes", "ceiling", "books", "fridge", "tv", "paper", "towel",
       "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
       "bathtub", "bag")
SYNTHIA16 = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
             "traffic sign", "vegetation", "sky", "person", "rider", "car", "bus", "motorcycle",
             "bicycle")
VOC = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
       "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
       "train", "tvmonitor")

# CamVid's 11 classes merge Cityscapes ones (lights are sign symbols, walls are building, all
# motor vehicles are car, a bicycle with its rider is one 'bicyclist').
TOWN = _street(sign="signsymbol", light="signsymbol", terrain="tree", person="pedestrian",
               rider="bicyclist", bicycle="bicyclist", motorcycle="bicyclist", truck="car",
               bus="car", train="car", wall="building", vegetation="tree", pavement="pavement")

RURAL = (
    E("sky", "sky", 1.0, hsv=SKY), E("road", "road", 1.0, hsv=ASPHALT, variant="rough"),
    E("road", "marking", 0.2, (1, 3), MARK), E("sidewalk", "sidewalk", 0.3, hsv=PAVING),
    E("drivable fallback", "patch", 0.7, (1, 4), DIRT, "drivable"),
    E("non-drivable fallback", "terrain", 0.75, (1, 2), DIRT),
    E("curb", "curb", 0.3, hsv=CONCRETE), E("building", "building", 0.75, (2, 7), FACADE),
    E("wall", "wall", 0.3, (1, 2), CONCRETE), E("fence", "fence", 0.12, (1, 1), FENCE),
    E("guard rail", "guard_rail", 0.08, (1, 1), METAL), E("bridge", "bridge", 0.04, hsv=CONCRETE),
    E("billboard", "billboard", 0.2, (1, 2), SIGN), E("vegetation", "tree", 0.9, (2, 7), FOLIAGE),
    E("vegetation", "hedge", 0.5, (1, 3), FOLIAGE), E("pole", "pole", 0.8, (1, 5), METAL),
    E("traffic sign", "sign", 0.3, (1, 2), SIGN), E("traffic light", "light", 0.1, (1, 1), DARK),
    E("obs-str-bar-fallback", "obstacle", 0.35, (1, 3), CONCRETE),
    E("person", "person", 0.7, (1, 6), CLOTHES), E("person", "animal", 0.12, (1, 2), FUR, "cow"),
    E("rider", "rider", 0.8, hsv=CLOTHES),
    E("motorcycle", "two_wheeler", 0.6, (1, 5), PAINT, "motorcycle"),
    E("bicycle", "two_wheeler", 0.15, (1, 2), PAINT, "bicycle"),
    E("autorickshaw", "vehicle", 0.4, (1, 3), PAINT, "autorickshaw"),
    E("car", "vehicle", 0.7, (1, 5), PAINT, "car"), E("truck", "vehicle", 0.3, (1, 2), PAINT, "truck"),
    E("bus", "vehicle", 0.15, (1, 1), PAINT, "bus"),
    E("vehicle fallback", "vehicle", 0.12, (1, 1), PAINT, "van"),
    E(None, "clutter", 0.7, (1, 4), ANY))

# SYNTHIA: no terrain, truck or train; lane markings are void ('lanemarking' maps to 255).
SIM = _street(truck="", train="", terrain="", marking=None)

# Indoor: furniture variants of one box concept, wall-mounted flats, small items on supports.
INDOOR = (
    E("ceiling", "ceiling", 1.0, hsv=WHITE), E("wall", "room_wall", 1.0, hsv=CONCRETE),
    E("floor", "floor", 1.0, hsv=WOOD), E("floor mat", "mat", 0.15, hsv=FABRIC),
    *(E(n, "furniture", p, c, h, v) for n, v, p, c, h in (
        ("cabinet", "cabinet", 0.4, (1, 2), WOOD), ("bed", "bed", 0.2, (1, 1), FABRIC),
        ("chair", "chair", 0.5, (1, 4), ANY), ("sofa", "sofa", 0.2, (1, 1), FABRIC),
        ("table", "table", 0.4, (1, 1), WOOD), ("desk", "desk", 0.2, (1, 1), WOOD),
        ("bookshelf", "bookshelf", 0.15, (1, 1), WOOD), ("shelves", "shelves", 0.12, (1, 1), WOOD),
        ("counter", "counter", 0.15, (1, 1), CONCRETE), ("dresser", "dresser", 0.1, (1, 1), WOOD),
        ("night stand", "night_stand", 0.12, (1, 2), WOOD), ("fridge", "fridge", 0.06, (1, 1), WHITE),
        ("toilet", "toilet", 0.08, (1, 1), WHITE), ("sink", "sink", 0.12, (1, 1), WHITE),
        ("bathtub", "bathtub", 0.05, (1, 1), WHITE), ("person", "person", 0.08, (1, 2), CLOTHES))),
    *(E(n, "wall_item", p, c, h, v) for n, v, p, c, h in (
        ("door", "door", 0.35, (1, 1), WOOD), ("window", "window", 0.35, (1, 2), SKY),
        ("picture", "picture", 0.35, (1, 3), ANY), ("blinds", "blinds", 0.1, (1, 1), WHITE),
        ("curtain", "curtain", 0.15, (1, 2), FABRIC), ("mirror", "mirror", 0.1, (1, 1), SKY),
        ("whiteboard", "whiteboard", 0.06, (1, 1), WHITE), ("tv", "tv", 0.1, (1, 1), DARK),
        ("shower curtain", "shower_curtain", 0.04, (1, 1), FABRIC))),
    *(E(n, "small", p, c, h, v) for n, v, p, c, h in (
        ("pillow", "pillow", 0.7, (1, 3), FABRIC), ("books", "books", 0.5, (1, 4), ANY),
        ("paper", "paper", 0.3, (1, 3), WHITE), ("towel", "towel", 0.3, (1, 2), FABRIC),
        ("box", "box", 0.2, (1, 3), WOOD), ("bag", "bag", 0.12, (1, 2), ANY),
        ("lamp", "lamp", 0.3, (1, 2), WHITE), ("clothes", "clothes", 0.12, (1, 2), CLOTHES))),
    E(None, "clutter", 0.6, (1, 3), ANY))

# VOC: look-alike groups come from one concept with different attributes.
OBJECTS = (
    E("background", "backdrop", 1.0, hsv=ANY), E("background", "clutter", 0.6, (1, 3), ANY),
    *(E(n, c, p, (1, 1), h, v) for n, c, v, p, h in (
        ("aeroplane", "flyer", "aeroplane", 0.05, METAL), ("bird", "flyer", "bird", 0.06, FUR),
        ("bicycle", "two_wheeler", "bicycle", 0.05, PAINT),
        ("motorbike", "two_wheeler", "motorcycle", 0.05, PAINT),
        ("boat", "boat", "boat", 0.05, PAINT), ("bottle", "bottle", "bottle", 0.06, ANY),
        ("bus", "vehicle", "bus", 0.04, PAINT), ("car", "vehicle", "car", 0.1, PAINT),
        ("train", "vehicle", "train", 0.04, PAINT), ("cat", "animal", "cat", 0.07, FUR),
        ("dog", "animal", "dog", 0.08, FUR), ("cow", "animal", "cow", 0.04, FUR),
        ("sheep", "animal", "sheep", 0.04, WHITE), ("horse", "animal", "horse", 0.05, FUR),
        ("chair", "furniture", "chair", 0.08, ANY), ("sofa", "furniture", "sofa", 0.05, FABRIC),
        ("diningtable", "furniture", "table", 0.05, WOOD),
        ("person", "person", "", 0.3, CLOTHES), ("pottedplant", "plant", "plant", 0.06, FOLIAGE),
        ("tvmonitor", "screen", "tv", 0.05, DARK))))


def _d(name, classes, size, train, val, real, style, entries):
    return DomainSpec(name, classes, size, train, val, real, style, tuple(entries))


DOMAINS: dict[str, DomainSpec] = {d.name: d for d in (
    _d("city", CITYSCAPES, (64, 128), 2975, 500, "Cityscapes",
       Style("street", (0.36, 0.50), (1.3, 1.7), hood=0.7, clutter=0.5), _street()),
    _d("town", CAMVID, (64, 128), 367, 101, "CamVid",
       Style("street", (0.42, 0.58), (1.1, 1.4), hue_shift=0.04, sat_scale=0.8, cast=0.18,
             blur=(0.3, 1.0), noise=(0.015, 0.045), view_width=(3.0, 7.0)), TOWN),
    _d("rural", IDD, (64, 128), 6993, 981, "IDD",
       Style("street", (0.34, 0.50), (1.2, 1.8), hue_shift=0.02, sat_scale=0.85, val_scale=0.95,
             cast=0.15, density=1.3, clutter=1.5, hood=0.4, view_width=(1.5, 6.0)), RURAL),
    _d("indoor", SUN, (64, 64), 5285, 5050, "SUN RGB-D",
       Style("room", (0.40, 0.62), (1.0, 1.6), light=(0.45, 1.2), gradient=0.5, shadow=0.2,
             noise=(0.015, 0.05), clutter=0.6, haze=0.0), INDOOR),
    _d("game", CITYSCAPES, (64, 128), 24966, 500, "GTA5",
       Style("street", (0.34, 0.50), (1.2, 1.9), sat_scale=1.35, val_scale=1.05, texture_amp=0.8,
             saturation=(1.1, 1.5), light=(0.8, 1.25), blur=(0.0, 0.1), noise=(0.0, 0.01),
             hood=0.15, clutter=0.3, haze=0.004), _street(scale=1.5)),
    _d("sim", SYNTHIA16, (64, 128), 9400, 500, "SYNTHIA",
       Style("street", (0.10, 0.30), (4.0, 8.0), hue_shift=-0.03, sat_scale=1.1, texture_amp=0.5,
             light=(0.55, 1.35), blur=(0.0, 0.2), noise=(0.0, 0.015), density=1.4,
             view_width=(4.0, 10.0)), SIM),
    _d("objects", VOC, (64, 64), 10582, 1449, "PASCAL VOC",
       Style("objects", (0.35, 0.75), (1.0, 1.0), void_band=1 / 64, shadow=0.2, haze=0.0),
       OBJECTS),
)}


def get_domain(name: str) -> DomainSpec:
    if name not in DOMAINS:
        raise ValueError(f"unknown domain '{name}' (known: {', '.join(DOMAINS)})")
    return DOMAINS[name]
