"""The launch of `ganctl train`, one job per module.

`overrides` reads the command line, `compose` turns it into a checked config through Hydra,
`folders` decides who may write into a run or sweep folder, `resume` plans what a job continues,
`task` is the function Hydra runs in the job, and `train` ties them together.
"""
