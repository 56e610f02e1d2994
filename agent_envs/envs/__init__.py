"""Environment families: one sub-package each."""
