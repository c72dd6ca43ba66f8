"""Pure state machines: no await, no clock reads (time is passed in), no I/O."""
