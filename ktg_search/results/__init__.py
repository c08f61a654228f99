"""The results: the results table and history of a search, `--where`, and runs outside a
search.

`book` (the results book: `results.parquet`, `history.parquet`, the journal), `journal`
(reading the journal as data), `verdict` (the top graphs and whether searching paid, in
the lines the search, `ktg status` and the report print), `where`
(`ktg query --where`'s filter language) and `runs` (training one graph over seeds outside a
search: its files, the seed table, the comparison table).

May import: `method`, `data`, `files`, `errors`, `registry`. Not the search, the report or
the commands, and never Ray.
"""
