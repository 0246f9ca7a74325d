"""Constants that every layer shares: the ignore label of masks and ImageNet's normalisation."""

#: the label of pixels that no loss or metric counts (mask borders, padding)
IGNORE_INDEX = 255
#: ImageNet's per-channel mean and standard deviation (RGB, 0..1) that the pretrained backbones expect
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: the flags of ``<saliency folder>/errors/<id>.png`` (the synthetic generator's injected saliency errors, one bit
#: each: missing class, missing part, false coverage, and the hard difficulty's halo, which is not an injected error)
MISSING_CLASS, MISSING_PART, FALSE_COVERAGE, HALO = 1, 2, 4, 8
#: the injected-error region E: the flags of the three injected errors
INJECTED = MISSING_CLASS | MISSING_PART | FALSE_COVERAGE
#: the subfolder of a saliency folder that holds the error flags
ERRORS_DIR = "errors"
