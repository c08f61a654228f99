"""Pictures as files: matplotlib on a back end that needs no display, and a figure as PNG
bytes (written with `fileio.atomic_write_bytes`). The report and the studies draw with
these, so that every picture the project writes is made the same way."""
from __future__ import annotations

import io


def plt():
    """matplotlib.pyplot on the Agg back end (files only: no display on a server)."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as pyplot
    return pyplot


def png(fig) -> bytes:
    """`fig` as PNG bytes (110 dpi, tight box); the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt().close(fig)
    return buf.getvalue()
