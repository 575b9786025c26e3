"""The integer model in memory: ordered ops on named tensors (docs/export-format.md). No torch here."""

from dataclasses import dataclass, field


@dataclass
class IntModel:
    """The integer model: ordered ops on named tensors, plus metadata. Arrays are int64 numpy."""

    meta: dict
    ops: list = field(default_factory=list)

    def op(self, name):
        for o in self.ops:
            if o.get("name") == name:
                return o
        raise KeyError(name)

    def layers(self):
        return [o for o in self.ops if o["op"] in ("conv", "linear")]
