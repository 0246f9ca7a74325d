"""Plain ``nn.Module`` networks (ResNet-38d, DeepLab, the timm backbone, the classifier head) and weight reading."""
