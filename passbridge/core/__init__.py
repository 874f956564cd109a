"""The door decision core: pure functions and data, no I/O, time passed in."""
