"""The subcommands, one module each: train (the loop), sample, interpolate, evaluate, report, inspect, export,
serve.

They import the training core, the parts and the base, never the command line above them.
"""
