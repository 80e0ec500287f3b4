"""Measured inputs: latency profiles and acceptance rates of real transformer models.

Needs the optional extra (`pip install 'dsi-online[measure]'`): torch and transformers are
imported only when a measurement runs. Modules: `presets` (architectures, no torch),
`latency` (TTFT/TPOT), `acceptance` (greedy acceptance rate), `models` and `runtime`.
"""
