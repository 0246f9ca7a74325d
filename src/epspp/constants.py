"""Constants that every layer shares: the ignore label of masks and ImageNet's normalisation."""

#: the label of pixels that no loss or metric counts (mask borders, padding)
IGNORE_INDEX = 255
#: ImageNet's per-channel mean and standard deviation (RGB, 0..1) that the pretrained backbones expect
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
