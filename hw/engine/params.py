"""EngineParams: an :class:`~rootshift.hw.params.ArrayParams` plus the engine's memories and lanes."""

from dataclasses import asdict, dataclass, field

from rootshift.sw.errors import ConfigError

from ..params import ArrayParams

KIB = 1024
DRAINS = ("parallel", "serial")
WEIGHT_MEMORIES = ("bram", "spram")
DESC_FETCHES = ("parallel", "serial")


def check_lanes(lanes):
    """``lanes`` (channels per activation word, one per vector lane) as a validated positive integer; the one
    message every lane-parallel unit and the cycle model give."""
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
        raise TypeError(f"Lane count must be a positive integer, not {lanes!r}")
    return lanes


def _kib(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value > 1 << 20:
        raise ConfigError(f"{name} must be an integer number of KiB in 1..{1 << 20}, not {value!r}")
    return value


@dataclass(frozen=True)
class EngineParams:
    """The hardware a program is compiled for.

    * ``array``: the PE array (rows = output positions of a tile, cols = output channels of a tile).
    * Memory capacities, in KiB, that the compiler's plan must fit (defaults: the iCEBreaker's UP5K,
      128 KiB of SPRAM split between weights and fine activations, EBR for codes and constants):
      ``weights_kib``, ``fine_kib``, ``codes_kib`` (all ``rows`` bank copies together), ``consts_kib``.
    * ``drain``: how the shadow accumulators reach the fine memory. ``"parallel"`` (default, the ECP5
      build): one requantizer per column, a shadow row per cycle (``rows`` drain cycles per tile).
      ``"serial"`` (the iCE40 UP5K build, 8 DSPs): one requantizer shared by the columns, one accumulator
      per cycle (``rows * cols`` drain cycles per tile, still hidden behind the next tile's MACs when
      ``k_eff >= rows * cols``; the compiler's bubble covers the rest, the cycle model stays exact).
    * ``weight_memory``: ``"bram"`` (default: block RAM, the program can be baked into its init) or
      ``"spram"`` (the iCE40 UP5K's 4 x 32 KiB ``SB_SPRAM256KA``, :class:`~rootshift.hw.engine.spram.SPRAM`:
      no init, so the engine is built with ``baked=False`` and the weights are ``LOAD`` ed).
    * ``desc_fetch``: ``"parallel"`` (default: one ``StepDesc.size``-bit word per step, read in one cycle)
      or ``"serial"`` (:class:`~rootshift.hw.engine.desc_fetch.DescFetch`: 32-bit words, ``ceil(size/32)``
      more cycles per step; a 658-bit-wide memory is 42 iCE40 block RAMs however few steps it holds).
    * ``lanes``: channels per activation word; fixed to ``array.cols`` (one drained row is one word).
    """

    array: ArrayParams = field(default_factory=ArrayParams)
    weights_kib: int = 64
    fine_kib: int = 64
    codes_kib: int = 16
    consts_kib: int = 16
    drain: str = "parallel"
    weight_memory: str = "bram"
    desc_fetch: str = "parallel"

    def __post_init__(self):
        if not isinstance(self.array, ArrayParams):
            raise ConfigError(f"array must be ArrayParams, not {self.array!r}")
        for name in ("weights_kib", "fine_kib", "codes_kib", "consts_kib"):
            _kib(name, getattr(self, name))
        if self.drain not in DRAINS:
            raise ConfigError(f"drain must be one of {', '.join(DRAINS)}, not {self.drain!r}")
        if self.weight_memory not in WEIGHT_MEMORIES:
            raise ConfigError(f"weight_memory must be one of {', '.join(WEIGHT_MEMORIES)}, not {self.weight_memory!r}")
        if self.desc_fetch not in DESC_FETCHES:
            raise ConfigError(f"desc_fetch must be one of {', '.join(DESC_FETCHES)}, not {self.desc_fetch!r}")

    @property
    def lanes(self):
        return self.array.cols

    @property
    def drain_cycles(self):
        """Cycles to drain one tile's shadow accumulators (docs/engine.md, "Sequencer")."""
        a = self.array
        return a.rows * a.cols if self.drain == "serial" else a.rows

    @property
    def limits(self):
        """Bytes per buffer (the names of the memory plan)."""
        return {"weights": self.weights_kib * KIB, "fine": self.fine_kib * KIB,
                "codes": self.codes_kib * KIB, "consts": self.consts_kib * KIB}

    def to_dict(self):
        d = {"array": asdict(self.array), "weights_kib": self.weights_kib, "fine_kib": self.fine_kib,
             "codes_kib": self.codes_kib, "consts_kib": self.consts_kib}
        # the defaults stay out: programs compiled before these fields existed keep their bytes
        if self.drain != "parallel":
            d["drain"] = self.drain
        if self.weight_memory != "bram":
            d["weight_memory"] = self.weight_memory
        if self.desc_fetch != "parallel":
            d["desc_fetch"] = self.desc_fetch
        return d

    @classmethod
    def from_dict(cls, d):
        return cls(array=ArrayParams(**d["array"]), **{k: v for k, v in d.items() if k != "array"})

    @classmethod
    def of(cls, params):
        """Accept an ArrayParams (default memories) or an EngineParams."""
        if isinstance(params, EngineParams):
            return params
        if isinstance(params, ArrayParams):
            return cls(array=params)
        raise ConfigError(f"params must be ArrayParams or EngineParams, not {params!r}")
