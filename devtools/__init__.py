"""Development tools: the local suite launcher, the demo, and helpers shared by tests and benchmarks."""
