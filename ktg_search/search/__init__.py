"""The search: the space of graphs, the Optuna study, the Ray Tune driver and resume.

`config` (`SearchConfig` and the presets in `presets/`), `space` (`SpaceSpec` and the
define-by-run space), `baselines` (the known graphs trained beside the searched ones),
`study` (the Optuna study and its storage), `driver` (Tune +
OptunaSearch + ASHA, the results callback), `resume`, `workers` (starting Ray, fanning out
tasks), `ledger` (the duplicate ledger), `progress` and `status` (what a person sees of a
search), `runinfo` (`run.json` read as data), `raylog` (Ray's log file) and `failpoints`
(crash points for the resume tests).

May import: `results`, `method`, `data`, `files`, `errors`, `registry`, and `trainables`.
The only layer that imports Ray, always inside the functions that need it, so that
`ktg status` and the search's config checks start without it.
"""
