"""The method: the knowledge-transfer graph and how a graph trains (no Ray).

`graph` (the JSON format, validation, canonical keys; built-in graphs in `graphs/`),
`params` (a search trial's parameters <-> its graph), `graphforms`, `multid` and `regroup`
(several discriminators, MGGAN's regrouping), `trainability` (graphs that cannot learn),
`gates`, `losses` (eqs. 1-5), `models` (generators with their taps, discriminators),
`trainconfig` (`TrainConfig`, a graph's recipe), `training` (`Trainer`: the engine's
iteration, epochs, evaluation, best epoch), `ema`, `checkpoints`, `teachers` (frozen
pretrained nodes), `evaluation` (the data set and evaluator a run trains and scores with),
`scoring` (how an epoch's IS per generator becomes a trial's objective) and `reference`
(the literal algorithm the engine is checked against).

May import: `data`, `files`, `errors`, `registry`. Never the search, the results, the
report or the commands, and never Ray.
"""
