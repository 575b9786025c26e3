"""ResNets defined here (no torchvision at run time): ResNet-8/20 (CIFAR-style) and ResNet-18/34.

Post-activation basic blocks; projection shortcuts are 1x1 conv + BN (option B), so every shortcut
is an ordinary quantizable layer and the integer contract has one residual rule.
"""

from torch import nn

from .errors import ConfigError


class BasicBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.bn1(self.conv1(x)).relu()
        out = self.bn2(self.conv2(out))
        sc = x if self.shortcut is None else self.shortcut(x)
        return (out + sc).relu()


class ResNet(nn.Module):
    """Stem, stages of basic blocks, global average pool, linear classifier.

    Members
    -------
    conv1, bn1 : stem (3x3 stride 1 for ``cifar`` style, 7x7 stride 2 + 3x3 max pool for ``imagenet``)
    stages : ModuleList of Sequential of BasicBlock
    fc : Linear
    """

    def __init__(self, blocks, widths, style, in_channels=3, num_classes=10):
        super().__init__()
        self.arch = {"blocks": list(blocks), "widths": list(widths), "style": style,
                     "in_channels": in_channels, "num_classes": num_classes}
        self.style = style
        if style == "cifar":
            self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
            self.maxpool = None
        else:
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages, cin = [], widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths)):
            stride = 1 if i == 0 else 2
            layers = []
            for j in range(n):
                layers.append(BasicBlock(cin, w, stride if j == 0 else 1))
                cin = w
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.bn1(self.conv1(x)).relu()
        if self.maxpool is not None:
            x = self.maxpool(x)
        for stage in self.stages:
            x = stage(x)
        return self.fc(self.pool(x).flatten(1))


ARCHS = {
    "resnet8": ([1, 1, 1], [16, 32, 64], "cifar"),
    "resnet20": ([3, 3, 3], [16, 32, 64], "cifar"),
    "resnet18": ([2, 2, 2, 2], [64, 128, 256, 512], "imagenet"),
    "resnet34": ([3, 4, 6, 3], [64, 128, 256, 512], "imagenet"),
}


def build_model(name, in_channels=3, num_classes=10):
    """A float ResNet by name (``resnet8``, ``resnet20``, ``resnet18``, ``resnet34``)."""
    if name not in ARCHS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(ARCHS)}")
    blocks, widths, style = ARCHS[name]
    m = ResNet(blocks, widths, style, in_channels, num_classes)
    m.arch["name"] = name
    return m
