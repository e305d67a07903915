"""The ten Fashion-MNIST class names, in label order."""

from fmnist.errors import InvalidValue

CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
NUM_CLASSES = len(CLASSES)


def class_id(label: "str | int") -> int:
    """Map a class name (case-insensitive) or an id 0-9 to the id; ValueError says what is valid."""
    if isinstance(label, bool):
        raise InvalidValue(f"label must be a class name or an id 0-{NUM_CLASSES - 1}, got {label!r}")
    if isinstance(label, int):
        if 0 <= label < NUM_CLASSES:
            return label
        raise InvalidValue(f"class id {label} is out of range: expected 0-{NUM_CLASSES - 1}")
    if isinstance(label, str):
        lowered = label.strip().lower()
        for i, name in enumerate(CLASSES):
            if name.lower() == lowered:
                return i
        if len(lowered) == 1 and lowered in "0123456789":
            return int(lowered)
        raise InvalidValue(f"unknown class name {label!r}: expected one of {', '.join(CLASSES)} or an id 0-9")
    raise InvalidValue(f"label must be a class name or an id 0-{NUM_CLASSES - 1}, got {type(label).__name__}")
