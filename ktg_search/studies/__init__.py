"""Studies: protocols that train many runs and compare them.

`bench` (`ktg bench`: the engine against the literal algorithm) and `compare`
(`ktg compare`: graphs x seeds under one recipe, the papers' tables).

May import: `search` (to fan runs out over Ray), `results`, `method`, `data`, `files`,
`errors`, `registry`; not the report or the commands.
"""
