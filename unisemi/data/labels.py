"""The label value every loader, loss and metric treats as void (not a class, never a target)."""
IGNORE_INDEX = 255
