"""Speed benchmarks: the code behind every `blinktrack bench <what>` figure, one module each.

Each module measures one area and returns a dict of figures (keys carry the units); modules that
add a `blinktrack bench` verb define `register_bench(bench_sub)` and are listed in
`blinktrack_ros.cli.COMMAND_MODULES`. `util` holds the shared timing and reporting helpers.
"""
